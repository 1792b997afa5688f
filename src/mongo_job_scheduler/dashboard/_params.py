"""Query-string values shared by the dashboard's pages and the HTTP API."""

from __future__ import annotations

from collections.abc import Mapping

from .._errors import ValidationError

__all__ = ["int_param"]


def int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """The integer query parameter ``name`` (``default`` when absent or empty), from ``low`` to
    ``high``; :class:`ValidationError` naming it otherwise."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(name, f"expected an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ValidationError(name, f"must be from {low} to {high}, got {value}")
    return value
