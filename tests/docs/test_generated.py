"""The generated parts of the docs are what the code produces today (``tests/docs/generate.py``;
``scripts/docs generate`` writes them again)."""

from __future__ import annotations

import json

from tests.docs.generate import (
    CLI_PAGE,
    END,
    OPENAPI_FILE,
    PROG,
    START,
    cli_page,
    command_of,
    commands,
    openapi_json,
    served_openapi,
)

STALE = "is out of date: run scripts/docs generate"


def test_the_cli_page_shows_each_commands_help_as_it_prints_it() -> None:
    current = CLI_PAGE.read_text(encoding="utf-8")
    assert cli_page(current) == current, f"docs/cli.md {STALE}"


def test_every_command_option_and_argument_is_on_the_cli_page() -> None:
    page = CLI_PAGE.read_text(encoding="utf-8")
    reference = page.split(START, 1)[1].split(END, 1)[0]
    paths = commands()
    assert ("jobs", "add") in paths and ("worker",) in paths
    for path in paths:
        title = " ".join([PROG, *path])
        assert f"\n### {title}\n" in reference, title
        section = reference.split(f"\n### {title}\n", 1)[1].split("\n### ", 1)[0]
        for param in command_of(path).params:
            for name in [*param.opts, *param.secondary_opts]:
                if name.startswith("-"):
                    assert name in section, f"{title}: {name}"
                else:  # an argument: named in the usage line
                    usage = next(line for line in section.splitlines() if line.startswith("Usage:"))
                    assert (param.metavar or name.upper()) in usage, f"{title}: {name}"


async def test_the_published_openapi_document_is_the_one_the_api_serves() -> None:
    served = await served_openapi()
    assert served["servers"] == [{"url": "/api"}]
    published = OPENAPI_FILE.read_text(encoding="utf-8")
    assert json.loads(published) == served, f"docs/openapi.json {STALE}"
    assert published == openapi_json(served), f"docs/openapi.json {STALE}"
