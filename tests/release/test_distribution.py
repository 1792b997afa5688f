"""The release build. The sdist holds what a build from it needs and nothing else; the wheel
holds the package with its templates, static files and ``py.typed``, and the licence; and the
wheel, installed with the ``dashboard`` extra into a fresh virtual environment (not the
checkout), runs an example job end to end on the real mongod, answers ``--help``, and serves the
dashboard's pages from the installed package.

``scripts/check-release`` builds the distributions, checks them with ``twine check --strict``
and runs this file with ``MJS_DIST`` naming their folder; without ``MJS_DIST`` the tests build
their own with ``scripts/build-dist``. Downloads for the fresh environment come from pip's cache.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import secrets
import socket
import subprocess
import sys
import tarfile
import uuid
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

import httpx
import pytest

from mongo_job_scheduler import __version__
from tests.helpers import wait_until_serving

pytestmark = pytest.mark.release

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "mongo_job_scheduler"
BUILD_TIMEOUT = 600
RUN_TIMEOUT = 120
SDIST_EXTRAS = {"LICENSE", "README.md", "CHANGELOG.md", "MANIFEST.in", "pyproject.toml"}
SDIST_EXTRAS |= {"PKG-INFO", "setup.cfg"}  # written by setuptools


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path


def tracked_package_files() -> set[str]:
    """The package's files as git tracks them, relative to ``src/``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", f"src/{PACKAGE}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    files = {name.removeprefix("src/") for name in listed.split("\0") if name}
    assert f"{PACKAGE}/py.typed" in files and f"{PACKAGE}/dashboard/static/dashboard.css" in files
    return files


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """The sdist and wheel in ``$MJS_DIST``, or built now by ``scripts/build-dist``."""
    given = os.environ.get("MJS_DIST")
    if given:
        folder = Path(given)
    else:
        folder = tmp_path_factory.mktemp("dist")
        built = subprocess.run(
            ["bash", str(ROOT / "scripts" / "build-dist"), str(folder)],
            env={**os.environ, "BUILD_PYTHON": sys.executable},
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
        )
        assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    sdists = sorted(folder.glob(f"{PACKAGE}-{__version__}.tar.gz"))
    wheels = sorted(folder.glob(f"{PACKAGE}-{__version__}-py3-none-any.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(folder.iterdir())
    return Dist(sdists[0], wheels[0])


def test_the_sdist_holds_the_sources_and_nothing_else(dist: Dist) -> None:
    top = f"{PACKAGE}-{__version__}/"
    with tarfile.open(dist.sdist) as archive:
        members = {m.name.removeprefix(top) for m in archive.getmembers() if m.isfile()}
        readme = archive.extractfile(f"{top}README.md")
        assert readme is not None
        assert readme.read() == (ROOT / "README.md").read_bytes()
    egg_info = {name for name in members if name.startswith(f"src/{PACKAGE}.egg-info/")}
    expected = {f"src/{name}" for name in tracked_package_files()} | SDIST_EXTRAS
    assert members - egg_info == expected, {
        "unexpected": sorted(members - egg_info - expected),
        "missing": sorted(expected - members),
    }


def test_the_wheel_holds_the_package_its_data_and_the_licence(dist: Dist) -> None:
    info = f"{PACKAGE}-{__version__}.dist-info"
    with zipfile.ZipFile(dist.wheel) as archive:
        names = set(archive.namelist())
        licence = archive.read(f"{info}/licenses/LICENSE")
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    metadata_files = {"METADATA", "WHEEL", "RECORD", "entry_points.txt", "top_level.txt"}
    expected = tracked_package_files() | {f"{info}/{name}" for name in metadata_files}
    expected.add(f"{info}/licenses/LICENSE")
    assert names == expected, {
        "unexpected": sorted(names - expected),
        "missing": sorted(expected - names),
    }
    assert licence == (ROOT / "LICENSE").read_bytes()
    assert "mongo-job-scheduler = mongo_job_scheduler.cli:main" in entry_points
    assert "mongo_job_scheduler = mongo_job_scheduler.testing" in entry_points


def test_the_wheel_metadata_declares_the_licence_version_urls_and_pythons(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as archive:
        raw = archive.read(f"{PACKAGE}-{__version__}.dist-info/METADATA").decode()
    metadata = HeaderParser().parsestr(raw)
    assert metadata["Name"] == "mongo-job-scheduler"
    assert metadata["Version"] == __version__
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["Requires-Python"] == ">=3.10"
    assert metadata["Description-Content-Type"] == "text/markdown"
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL", []))
    assert set(urls) == {"Homepage", "Documentation", "Changelog", "Issues"}, urls
    assert all(url.startswith(urls["Homepage"]) for url in urls.values()), urls
    classifiers = metadata.get_all("Classifier", [])
    versions = [c.rpartition(":: ")[2] for c in classifiers if re.search(r"3\.\d+$", c)]
    assert versions and all(int(v.split(".")[1]) >= 10 for v in versions), classifiers
    assert {"Typing :: Typed", "Framework :: AsyncIO"} <= set(classifiers), classifiers
    assert set(metadata.get_all("Provides-Extra", [])) >= {"dashboard", "metrics", "otel"}


# -- the wheel installed in a fresh virtual environment ---------------------------------------


@dataclass(frozen=True)
class Installed:
    """A fresh virtual environment holding the wheel (with the dashboard extra)."""

    bin: Path
    workdir: Path

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment: this venv first on PATH, nothing from the checkout."""
        path = f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"
        kept = {name: os.environ[name] for name in ("HOME", "LANG", "TMPDIR") if name in os.environ}
        return {**kept, "PATH": path, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1", **extra}

    def run(self, *argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / argv[0]), *argv[1:]],
            cwd=self.workdir,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )


@pytest.fixture(scope="module")
def installed(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("fresh")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # This environment's pip installs into the fresh one (which gets no pip of its own), with
    # pip's cache: the second run downloads nothing.
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install"]
    done = subprocess.run(
        [*pip, "--quiet", "--disable-pip-version-check", f"{dist.wheel}[dashboard]"],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    (workdir := root / "work").mkdir()
    return Installed(venv / "bin", workdir)


@pytest.mark.slow
def test_the_installed_package_runs_an_example_job_end_to_end(
    installed: Installed, mongodb_uri: str
) -> None:
    example = ROOT / "examples" / "fan_out_fan_in.py"
    words = sum(len(text.split()) for text in runpy.run_path(str(example))["BOOK"])
    database = f"mjs_release_{uuid.uuid4().hex[:12]}"
    code = (
        "import asyncio, json, runpy, sys, mongo_job_scheduler as m\n"
        "main = runpy.run_path(sys.argv[1])['main']\n"
        "total = asyncio.run(main(sys.argv[2], sys.argv[3]))\n"
        "print(json.dumps({'file': m.__file__, 'version': m.__version__, 'total': total}))\n"
    )
    ran = installed.run("python", "-I", "-c", code, str(example), mongodb_uri, database)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    result = json.loads(ran.stdout.splitlines()[-1])
    assert result["total"] == words
    assert result["version"] == __version__
    site = installed.bin.parent / "lib"
    assert Path(result["file"]).is_relative_to(site), result["file"]
    assert (Path(result["file"]).parent / "py.typed").is_file()


@pytest.mark.slow
def test_the_installed_cli_answers_help(installed: Installed) -> None:
    helped = installed.run("mongo-job-scheduler", "--help")
    assert helped.returncode == 0, helped.stderr
    for command in ("dashboard", "demo", "jobs", "stats", "worker", "workers"):
        assert re.search(rf"^\s+{command}\s", helped.stdout, re.M), helped.stdout
    version = installed.run("mongo-job-scheduler", "--version")
    assert version.returncode == 0 and __version__ in version.stdout, version


@pytest.mark.slow
def test_the_installed_dashboard_serves_its_pages(
    installed: Installed, database_uri: str, tmp_path: Path
) -> None:
    added = installed.run(
        "mongo-job-scheduler", "jobs", "add", "release-check", "--delay", "1h", "--json",
        MONGODB_URI=database_uri,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    job_id = json.loads(added.stdout)["job"]["_id"]
    token = secrets.token_urlsafe(24)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (tmp_path / "dashboard.log").open("w+") as log:
        server = subprocess.Popen(
            [str(installed.bin / "mongo-job-scheduler"), "dashboard", "--port", str(port)],
            cwd=installed.workdir,
            env=installed.env(MONGODB_URI=database_uri, MJS_DASHBOARD_TOKEN=token),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            text=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_serving(base, server)
            with httpx.Client(base_url=base, timeout=10) as browser:
                check_pages(browser, token, job_id)
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.seek(0)
            output = log.read()
    assert "Dashboard on http://127.0.0.1:" in output, output


def check_pages(browser: httpx.Client, token: str, job_id: str) -> None:
    """The login page, the static files (byte for byte the package's), and pages behind the
    token: signed in with a cookie, and with a Bearer token."""
    static = ROOT / "src" / PACKAGE / "dashboard" / "static"
    assert browser.get("/").status_code == 303  # not signed in: to the login page
    login = browser.get("/login")
    assert login.status_code == 200, login.text
    assert 'name="token"' in login.text and "/static/dashboard.css" in login.text
    for name in ("dashboard.css", "dashboard.js"):
        served = browser.get(f"/static/{name}")
        assert served.status_code == 200 and served.content == (static / name).read_bytes()
    signed_in = browser.post("/login", data={"token": token, "next": "/jobs"})
    assert signed_in.status_code == 303 and signed_in.headers["location"].endswith("/jobs")
    jobs = browser.get("/jobs")
    assert jobs.status_code == 200 and "release-check" in jobs.text, jobs.text
    job = browser.get(f"/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"})
    assert job.status_code == 200 and "release-check" in job.text, job.text
