"""Limits on the shape of values the library accepts, shared by validation and by the parsing
of values operators type (listed in docs/security.md)."""

from __future__ import annotations

__all__ = ["MAX_FILTER_KEY_LENGTH", "MAX_FILTER_KEY_PARTS", "MAX_NESTING"]

MAX_NESTING = 90
"""The deepest a value may nest lists and mappings (job data, a handler's result, a filter
value): ``{"a": {"b": 1}}`` nests 2 levels. MongoDB allows 100 levels per document; the job
document around the value takes one, and the rest is margin."""

MAX_FILTER_KEY_PARTS = MAX_NESTING
"""The most dotted parts a ``get_jobs`` data filter key has (no stored value is deeper)."""

MAX_FILTER_KEY_LENGTH = 1024
"""The longest a ``get_jobs`` data filter key is, in characters."""
