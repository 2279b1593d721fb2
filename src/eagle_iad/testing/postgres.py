"""A real PostgreSQL for tests and benchmarks: Debian's ``postgresql`` package, a cluster of its own in a temporary
folder on a free port, stopped (and removed) when the session ends.

Why not the package's own cluster: it may not run (a container without an init system), it listens
on a fixed port, and tests must never touch a database someone else uses. As root, the server runs as
the package's ``postgres`` user (PostgreSQL refuses to run as root). Tests skip, with :func:`skip_reason`, only
where the package is not installed.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


INITDB = _bin("initdb")
POSTGRES = _bin("postgres")


def skip_reason() -> str | None:
    """Why a real PostgreSQL cannot run here (``None``: it can)."""
    if INITDB is None or POSTGRES is None:
        return "PostgreSQL is not installed (apt-get install postgresql; make test-python installs it)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'eagle-iad[postgresql]')"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a 'postgres' user to run the server as"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresError(Exception):
    """The server could not be set up or did not start; the message holds its log."""


class PostgresServer:
    """One cluster, started in a fresh temporary folder with trust authentication on 127.0.0.1.

    ``slowdown`` stretches every wait (a busy machine: tests' ``EAGLE_TEST_SLOWDOWN``).
    """

    def __init__(self, slowdown: float = 1.0) -> None:
        self.slowdown = slowdown
        self.folder = Path(tempfile.mkdtemp(prefix="eagle-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def start(self) -> PostgresServer:
        assert INITDB is not None and POSTGRES is not None
        log = self.folder / "initdb.log"
        done = subprocess.run([*self._as, INITDB, "-D", str(self.data), "-U", "postgres", "--auth=trust",
                               "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"],
                              capture_output=True, text=True, timeout=120 * self.slowdown)  # fmt: skip
        if done.returncode != 0:
            log.write_text(done.stdout + done.stderr)
            raise PostgresError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return self._serve()

    def _serve(self) -> PostgresServer:
        """Start the server on the cluster made by :meth:`start` and wait until it accepts connections."""
        assert POSTGRES is not None
        with open(self.folder / "postgres.log", "ab") as out:
            self.process = subprocess.Popen(
                [*self._as, POSTGRES, "-D", str(self.data), "-p", str(self.port), "-k", str(self.folder),
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 60 * self.slowdown
        while True:
            if self.process.poll() is not None:
                raise PostgresError(f"postgres exited with {self.process.returncode}:\n{self.log()}")
            try:
                self.connect("postgres").close()
                return self
            except Exception:
                if time.monotonic() > deadline:
                    message = f"postgres did not accept connections on port {self.port}:\n{self.log()}"
                    raise PostgresError(message) from None
                time.sleep(0.1)

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str) -> Any:
        import psycopg

        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=5)

    def new_database(self, **settings: str) -> str:
        """A fresh, empty database's URL (each test its own, so none sees another's rows).

        ``settings``: defaults for every session on it, as a plant's DBA may set them
        (``default_transaction_isolation="repeatable read"``: ``ALTER DATABASE ... SET``).
        """
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self.connect("postgres") as db:
            db.execute(f"CREATE DATABASE {name}")
            for setting, value in settings.items():
                if not setting.isidentifier():
                    raise ValueError(f"not a setting's name: {setting!r}")
                db.execute(f"ALTER DATABASE {name} SET {setting} = '{value.replace(chr(39), chr(39) * 2)}'")
        return self.url(name)

    def restart(self, down_s: float = 0.0) -> None:
        """Restart the server as an administrator's ``pg_ctl restart -m fast`` does: every session ends (and with
        it every session's advisory locks), nothing is accepted for ``down_s``, then the same data on the same
        port. Why: what a plant's database restart does to the processes sharing it, for the tests to ride out."""
        assert self.process is not None
        # a "fast" shutdown (sessions ended, not waited for), sent to the server itself: runuser passes on SIGTERM
        # only; the server's pid is the first line of its postmaster.pid
        server = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(server, signal.SIGINT)
        self.process.wait(timeout=60 * self.slowdown)
        self.process = None
        time.sleep(down_s)
        self._serve()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # SIGTERM: a "smart" shutdown; SIGINT would be "fast"
            try:
                self.process.wait(timeout=30 * self.slowdown)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        shutil.rmtree(self.folder, ignore_errors=True)

    def log(self) -> str:
        path = self.folder / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""
