"""The runnable examples under ``examples/`` work as shipped, against the real mongod."""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_fan_out_fan_in(mongodb_uri: str) -> None:
    example = load("fan_out_fan_in")
    words = sum(len(text.split()) for text in example.BOOK)
    assert await example.main(mongodb_uri, f"mjs_example_{uuid.uuid4().hex[:8]}") == words
