"""``dashboard``: serve the web dashboard (``dashboard.create_app``) with uvicorn for the
configured database and collection."""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
from collections.abc import Callable
from typing import Any

import click
from pymongo import AsyncMongoClient

from .._errors import ValidationError
from ..scheduler import Scheduler
from ..stores import MongoJobStore
from ._connection import CliError, CliOptions, open_store, redact_uri, usage_error

__all__ = ["dashboard"]


@click.command(short_help="Serve the web dashboard (job counts, lists, details, actions).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--token",
    envvar="MJS_DASHBOARD_TOKEN",
    help="Token that signs in and authorises actions (env MJS_DASHBOARD_TOKEN), at least 16 "
    "characters; a random one is generated and printed when not given.",
)
@click.option(
    "--refresh",
    default=3.0,
    show_default=True,
    type=click.FloatRange(0.5, 3600),
    help="Seconds between live refreshes of the open page.",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="HOST",
    help="Answer only requests naming this Host (e.g. jobs.example.com, *.example.com); "
    "repeat for several. Default: any.",
)
@click.option(
    "--forwarded-allow-ips",
    metavar="IPS",
    help="Trust X-Forwarded-For/-Proto from these proxy addresses (comma-separated, or *): "
    "the client's address and https then come from the proxy. Default: trust no proxy.",
)
@click.option(
    "--metrics/--no-metrics",
    default=True,
    show_default=True,
    help="Serve queue gauges at /metrics (token needed) when prometheus-client is installed.",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    metavar="ORIGIN",
    help="Let pages of this origin (https://app.example.com) call the HTTP API at /api; "
    "repeat for several. Without it, CORS is off.",
)
@click.pass_obj
def dashboard(
    options: CliOptions,
    host: str,
    port: int,
    token: str | None,
    refresh: float,
    allowed_hosts: tuple[str, ...],
    forwarded_allow_ips: str | None,
    metrics: bool,
    cors_origins: tuple[str, ...],
) -> None:
    """Serve the dashboard, and the HTTP API at /api, for the configured database and
    collection until Ctrl-C.

    Needs the `dashboard` extra (pip install 'mongo-job-scheduler[dashboard]'). Every page,
    action and API route needs the token; see docs/dashboard.md and docs/api.md. It speaks
    plain HTTP: beyond 127.0.0.1, put a proxy that terminates TLS in front
    (--forwarded-allow-ips names it).
    """
    try:
        import uvicorn

        from ..dashboard import create_app
        from ..dashboard._api import checked_origins
        from ..dashboard._auth import check_token
    except ImportError as exc:
        raise CliError(
            f"the dashboard needs its extra: pip install 'mongo-job-scheduler[dashboard]' ({exc})"
        ) from None
    if token:
        try:
            check_token(token)
        except ValidationError as exc:
            raise usage_error(exc.reason, "token") from None
    try:
        checked_origins(cors_origins)
    except ValidationError as exc:
        raise usage_error(exc.reason, "cors_origins") from None
    asyncio.run(_check_reachable(options))
    uri = options.mongodb_uri
    assert uri is not None
    if not token:
        token = secrets.token_urlsafe(24)
        click.echo(f"Dashboard token (generated): {token}", err=True)
    store = MongoJobStore(AsyncMongoClient(uri)[options.database_name], options.collection_name)
    scheduler = Scheduler(store)
    registry, on_startup = _dashboard_metrics(scheduler) if metrics else (None, None)
    try:
        app: Any = create_app(
            scheduler,
            token=token,
            refresh_seconds=refresh,
            metrics_registry=registry,
            allowed_hosts=list(allowed_hosts) or None,
            cors_origins=cors_origins,
        )
    except ValidationError as exc:
        params = {"token": "token", "refresh_seconds": "refresh", "cors_origins": "cors_origins"}
        param = params.get(exc.field)
        raise usage_error(exc.reason, param) from None
    if on_startup is not None:
        app = _on_lifespan(app, on_startup)
    if not _loopback(host):
        click.echo(
            f"Warning: listening on {host}, beyond this machine, over plain HTTP: the token and "
            "session cookies cross the network readable unless a proxy that terminates TLS is "
            "in front (see docs/dashboard.md, 'Behind a proxy')",
            err=True,
        )
    click.echo(
        f"Dashboard on http://{host}:{port}/ (HTTP API at /api) for {options.where} at "
        f"{redact_uri(uri)} (Ctrl-C stops it)",
        err=True,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        proxy_headers=forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips,
        server_header=False,
    )


def _loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _dashboard_metrics(scheduler: Scheduler) -> tuple[Any, Callable[[], Any] | None]:
    """A registry with the scheduler's queue gauges (refreshed every 15 s once serving), or
    ``(None, None)`` when prometheus-client is not installed."""
    try:
        from prometheus_client import CollectorRegistry

        from ..metrics import instrument
    except ImportError:
        return None, None
    registry = CollectorRegistry()
    instrumented = instrument(scheduler, registry=registry)
    return registry, instrumented.start_refreshing


def _on_lifespan(app: Any, start: Callable[[], Any]) -> Any:
    """Wrap an ASGI app so ``start()`` runs once inside the server's event loop."""
    started = False

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        nonlocal started
        if not started:
            started = True
            start()
        await app(scope, receive, send)

    return wrapped


async def _check_reachable(options: CliOptions) -> None:
    """Usage errors in the connection options, or :class:`CliError` if the server does not
    answer, before serving anything."""
    client, _store = await open_store(options)
    await client.close()
