"""Helpers importable by tests: ``from tests.helpers import wait_for``."""

from __future__ import annotations

import http.client
import subprocess
import time

from tests.conftest import wait_for, with_path

__all__ = ["wait_for", "wait_until_serving", "with_path"]


def wait_until_serving(base: str, process: subprocess.Popen[str]) -> None:
    """Return once ``base``/healthz answers (the server binds after its start line)."""
    deadline = time.monotonic() + 30
    while True:
        connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=2)
        try:
            connection.request("GET", "/healthz", headers={"Host": "dash.example"})
            connection.getresponse().read()
            return
        except OSError:
            assert process.poll() is None, "the dashboard exited"
            assert time.monotonic() < deadline, "the dashboard did not come up"
            time.sleep(0.05)  # polling a server that is starting: nothing to wait on
        finally:
            connection.close()
