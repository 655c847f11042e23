"""A real PostgreSQL server for the tests that need one (a fixture, never a mock).

``TUNEGATE_TEST_DATABASE_URL`` (``postgresql://user:pass@host:port/db``) names a server to
use. Without it the fixture starts its own from Debian's PostgreSQL binaries
(``/usr/lib/postgresql/<version>/bin``, or ``initdb`` on PATH) in a temporary data
directory on a free loopback port, and stops it at the end of the session. ``initdb`` and
``pg_ctl`` refuse to run as root, so as root they run as the ``postgres`` user
(``runuser``), in a folder that user owns. ``pg_ctl start -w`` returns once the server
accepts connections. Each test gets a database of its own (``fresh_database``), so a study
or a log left by an earlier test is never read by the next.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

URL_ENV = "TUNEGATE_TEST_DATABASE_URL"


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if found:
        return Path(found[0]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).resolve().parent if on_path else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


class PostgresServer:
    """A private PostgreSQL server in a temporary folder: ``start``, ``stop`` (a test may
    stop it mid-traffic and start it again on the same port and data), ``close``."""

    def __init__(self) -> None:
        self.bin_dir = _binaries()
        if self.bin_dir is None:
            pytest.fail(f"no PostgreSQL binaries (initdb) on this machine and {URL_ENV} is not set")
        self.folder = Path(tempfile.mkdtemp(prefix="tunegate-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self.data, self.port = self.folder / "data", _free_port()
        init = self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        assert init.returncode == 0, init.stderr
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        cmd = _as_owner([str(self.bin_dir / tool), *args])
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        """Start and wait until it accepts connections (pg_ctl -w)."""
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "log")
        done = self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        assert done.returncode == 0, done.stderr + (self.folder / "log").read_text()

    def stop(self) -> None:
        """Stop now (fast shutdown: open connections are cut), and wait until it is down."""
        done = self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        assert done.returncode == 0, done.stderr

    def close(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def server_url(given: str | None = None) -> Iterator[str]:
    """A running server's URL: the one given, or a private server started here and
    stopped on exit (also what bench/requestlog_throughput.py uses)."""
    if given:
        yield given
        return
    server = PostgresServer()
    server.start()
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a running PostgreSQL server's ``postgres`` database."""
    with server_url(os.environ.get(URL_ENV)) as url:
        yield url


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A server of the test's own, started, that the test may stop and start again."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


def fresh_database(server_url: str) -> str:
    """Create an empty database on the server; its URL."""
    import psycopg

    name = f"tunegate_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"
