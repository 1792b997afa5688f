"""What the command line prints of a MongoDB URI and of the driver's errors: never the user
name, the password (whole or a piece of it) or a sensitive option's value, however the URI is
malformed."""

from __future__ import annotations

import pytest
from pymongo.errors import ConfigurationError, InvalidURI, OperationFailure

from mongo_job_scheduler.cli._connection import mongo_error_message, redact_secrets, redact_uri

PIECES = ("Zq9", "x7Kp", "Wm3")
"""The pieces of the passwords below, each distinctive enough to search for."""

SECRET_OPTIONS = {
    "authMechanismProperties": "AWS_SESSION_TOKEN:Tk9sess,ENVIRONMENT:azure",
    "tlsCertificateKeyFilePassword": "Kf9pass",
    "proxyUsername": "Pu9user",
    "proxyPassword": "Px9pass",
    "sslPEMKeyPassword": "Sp9pass",
    "sslClientCertificateKeyPassword": "Sc9pass",
}
OPTION_SECRETS = ("Tk9sess", "Kf9pass", "Pu9user", "Px9pass", "Sp9pass", "Sc9pass")


@pytest.mark.parametrize(
    "uri",
    [
        "mongodb://ops:Zq9x7KpWm3@db.example:27017/app",
        "mongodb://ops:Zq9/x7Kp@db.example:27017/app",
        "mongodb://ops:Zq9@Wm3@db.example:27017/app",
        "mongodb://ops:Zq9?x7Kp@db.example:27017/app?w=1",
        "mongodb://ops:Zq9:x7Kp/Wm3@db.example/app",
        "mongodb://ops:Zq9%40x7Kp%2FWm3@db.example/app",
        "mongodb+srv://ops:Zq9/x7Kp@Wm3@cluster.example/app?retryWrites=true",
        "mongodb://Zq9x7Kp@db.example/app?authMechanism=MONGODB-X509",
        "ops:Zq9/x7Kp@db.example:27017",
        "mongodb://ops:Zq9x7Kp@a.example:1,ops:Wm3@b.example:2/app",
    ],
)
def test_no_piece_of_the_user_info_is_printed(uri: str) -> None:
    shown = redact_uri(uri)
    for piece in (*PIECES, "ops"):
        assert piece not in shown, shown
    assert "***@" in shown
    assert "example" in shown  # the hosts after the last "@" stay


@pytest.mark.parametrize("option", sorted(SECRET_OPTIONS))
@pytest.mark.parametrize("spelling", [str, str.lower, str.upper])
def test_sensitive_options_are_redacted_in_any_spelling(option: str, spelling: object) -> None:
    name = spelling(option)  # type: ignore[operator]
    uri = f"mongodb://db.example/app?appName=jobs&{name}={SECRET_OPTIONS[option]}&w=1"
    shown = redact_uri(uri)
    for secret in OPTION_SECRETS:
        assert secret not in shown, shown
    assert f"{name}=***" in shown
    assert shown.startswith("mongodb://db.example/app?appName=jobs&") and shown.endswith("&w=1")


def test_options_separated_by_semicolons_are_redacted_too() -> None:
    shown = redact_uri("mongodb://db.example/?proxyPassword=Px9pass;w=1")
    assert shown == "mongodb://db.example/?proxyPassword=***;w=1"


def test_a_uri_without_secrets_is_printed_as_it_is() -> None:
    uri = "mongodb://a.example:1,b.example:2/app?replicaSet=rs0&w=majority"
    assert redact_uri(uri) == uri


URI = (
    "mongodb://ops:Zq9%2Fx7Kp@db.example:27017/app"
    "?authMechanismProperties=AWS_SESSION_TOKEN:Tk9sess&proxyPassword=Px9pass"
)


@pytest.mark.parametrize(
    "error",
    [
        InvalidURI(f"bad URI {URI}"),
        InvalidURI("Port must be an integer between 0 and 65535: 'x7Kp'"),
        ConfigurationError("unknown user 'ops', password 'Zq9/x7Kp' (decoded)"),
        OperationFailure("Authentication failed for ops:Zq9%2Fx7Kp@db.example:27017"),
        OperationFailure("session token Tk9sess expired; proxy password Px9pass refused"),
    ],
)
def test_driver_errors_lose_every_secret_of_the_uri(error: Exception) -> None:
    message = mongo_error_message(error, URI)
    for secret in (*PIECES[:2], "Zq9%2Fx7Kp", "Tk9sess", "Px9pass"):
        assert secret not in message, message
    assert "\n" not in message


def test_credentials_in_any_text_are_redacted_without_knowing_the_uri() -> None:
    text = (
        "could not reach mongodb://ops:Zq9x7Kp@db.example/app?proxyPassword=Px9pass "
        "(seed ops:Wm3@b.example:2)"
    )
    shown = redact_secrets(text)
    for secret in (*PIECES, "Px9pass"):
        assert secret not in shown, shown
    assert "db.example" in shown and "b.example:2" in shown
