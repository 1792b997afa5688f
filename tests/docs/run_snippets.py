"""Runs the blocks of one docs program in one interpreter, in order, as a reader would type them
into ``python -m asyncio``: each block sees the names the ones before it defined, and a block
with a top-level ``await`` runs on one event loop kept for the whole program.

``python run_snippets.py BLOCK.py...``; after each block it prints :data:`SEPARATOR` on a line
of its own, so the test can tell what each block printed. A failing block's traceback names its
file, and the exit status is 1.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import sys
import traceback

SEPARATOR = "\x1e-- end of block --\x1e"


def run(paths: list[str]) -> int:
    namespace: dict[str, object] = {"__name__": "__main__"}
    loop = asyncio.new_event_loop()
    try:
        for path in paths:
            with open(path, encoding="utf-8") as file:
                source = file.read()
            try:
                code = compile(source, path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
                if code.co_flags & inspect.CO_COROUTINE:
                    loop.run_until_complete(eval(code, namespace))
                else:
                    exec(code, namespace)
            except BaseException:
                traceback.print_exc()
                return 1
            print(SEPARATOR, flush=True)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
