"""Real responses of the HTTP API checked against its OpenAPI document: the route, method and
status must be documented, the body must match the documented schema (``jsonschema``, draft
2020-12, date-times with an offset), and documented headers must be sent."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import httpx
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

BASE = "urn:mongo-job-scheduler:api"

FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return "T" in value and parsed.utcoffset() is not None


class OpenApi:
    """One OpenAPI document and the checks of responses against it."""

    def __init__(self, document: dict[str, Any], prefix: str = "/api") -> None:
        self.document = document
        self.prefix = prefix
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(BASE, resource)
        templates = sorted(document["paths"], key=lambda t: (t.count("{"), t))
        self.templates = [(self._pattern(t), t) for t in templates]

    @staticmethod
    def _pattern(template: str) -> re.Pattern[str]:
        parts = re.split(r"(\{[^}]+\})", template)
        regex = "".join(
            ("(.+)" if part == "{name}" else "([^/]+)") if part.startswith("{") else re.escape(part)
            for part in parts
        )
        return re.compile(f"^{regex}$")

    def template(self, path: str) -> str | None:
        """The documented path template ``path`` (under the prefix) matches, if any."""
        assert path.startswith(self.prefix), path
        relative = path[len(self.prefix) :]
        for pattern, template in self.templates:
            if pattern.match(relative):
                return template
        return None

    def _resolve(self, item: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in item:
            node: Any = self.document
            for part in item["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            item = node
        return item

    def validate(self, value: Any, schema: dict[str, Any]) -> None:
        """``value`` must match ``schema`` (a schema of the document, ``$ref``s included)."""
        rooted = {"$ref": BASE + schema["$ref"]} if "$ref" in schema else schema
        validator = Draft202012Validator(rooted, registry=self.registry, format_checker=FORMATS)
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
        assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]

    def check(self, response: httpx.Response) -> tuple[str, str, str]:
        """Check one response; the documented ``(path template, method, status)`` it is."""
        response.read()
        path = response.request.url.path
        template = self.template(path)
        method = response.request.method.lower()
        status = str(response.status_code)
        if template is None:  # no such route: a 404 Error
            assert status == "404", f"{path} matches no documented path: {status}"
            self.validate(response.json(), {"$ref": "#/components/schemas/Error"})
            return path, method, status
        described = self.document["paths"][template]
        if status == "405":
            assert method not in described, f"{method} {template} answered 405"
            spec = self._resolve(self.document["components"]["responses"]["E405"])
        else:
            assert method in described, f"{method} {template} is not documented"
            responses = described[method]["responses"]
            assert status in responses, f"{method} {template} {status}: {response.text}"
            spec = self._resolve(responses[status])
        content = spec.get("content")
        if content is None:
            assert response.content == b"", response.text
        else:
            assert response.headers["content-type"].startswith("application/json")
            self.validate(response.json(), content["application/json"]["schema"])
        for header in spec.get("headers", {}):
            assert header.lower() in response.headers, f"{status} without {header}"
        return template, method, status


def checked_client(
    base_url: str,
    openapi: OpenApi,
    *,
    seen: set[tuple[str, str, str]] | None = None,
    **kwargs: Any,
) -> httpx.Client:
    """A client whose every response must match ``openapi`` (and is added to ``seen``)."""

    def check(response: httpx.Response) -> None:
        described = openapi.check(response)
        if seen is not None:
            seen.add(described)

    return httpx.Client(base_url=base_url, timeout=10, event_hooks={"response": [check]}, **kwargs)


def protected_requests(job_id: Any, name: str = "x") -> list[tuple[str, str, Any]]:
    """One well-formed request ``(method, path, json body)`` of every route behind the
    token."""
    return [
        ("GET", "/jobs", None),
        ("POST", "/jobs", {"name": name}),
        ("POST", "/jobs/bulk", {"jobs": [{"name": name}]}),
        ("GET", "/jobs/stats", None),
        ("GET", "/jobs/activity", None),
        ("GET", f"/jobs/{job_id}", None),
        ("PATCH", f"/jobs/{job_id}", {"data": 1}),
        ("DELETE", f"/jobs/{job_id}", None),
        ("POST", f"/jobs/{job_id}/cancel", None),
        ("POST", f"/jobs/{job_id}/retry", None),
        ("POST", f"/jobs/{job_id}/run-now", None),
        ("POST", f"/names/{name}/pause", None),
        ("POST", f"/names/{name}/resume", None),
    ]
