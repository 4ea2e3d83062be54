"""A throw-away PostgreSQL server for tests and benchmarks: a fresh cluster in a temporary folder,
listening on 127.0.0.1 only, with a password (SCRAM) for its one user, deleted when stopped.

PostgreSQL refuses to run as root (CI runs as root): then the cluster belongs to ``nobody`` and every
server command runs as that user. The binaries come from ``$PATH`` or Debian's
``/usr/lib/postgresql/<version>/bin`` (the ``postgresql`` package does not put them on the path).

    python tests/postgres.py start FOLDER     # prints the URL; FOLDER must not exist; durable (fsync on)
    python tests/postgres.py stop FOLDER
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

USER = "chatbot"


def binaries() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``; RuntimeError with what to install when there is none."""
    found = shutil.which("initdb") and shutil.which("pg_ctl")
    if found:
        return Path(shutil.which("pg_ctl")).resolve().parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True):
        if Path(folder, "initdb").exists():
            return Path(folder)
    raise RuntimeError("PostgreSQL server binaries not found (initdb, pg_ctl): apt-get install postgresql")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayPostgres:
    """``start()`` a cluster in ``folder`` (made here), ``url(database)``, ``new_database()``, ``stop()``."""

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="chatbot-pg-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.data = self.folder / "data"
        self.bin = binaries()
        self.as_user = "nobody" if os.geteuid() == 0 else None
        self.password_file = self.folder / "password"
        self.port_file = self.folder / "port"
        self._count = 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin / args[0]), *args[1:]], user=self.as_user, check=check,
                              capture_output=True, text=True, timeout=120)

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    @property
    def port(self) -> int:
        return int(self.port_file.read_text())

    def start(self, durable: bool = False) -> "ThrowawayPostgres":
        """Initialise and start the cluster; ``durable`` keeps PostgreSQL's defaults (every commit flushed
        to disk, as in production: benchmarks), else commits are not flushed (tests: faster, and the
        cluster is thrown away anyway)."""
        self.password_file.write_text(secrets.token_urlsafe(18) + "\n")
        self.port_file.write_text(str(free_port()))
        if self.as_user:
            shutil.chown(self.folder, self.as_user)
            shutil.chown(self.password_file, self.as_user)
        self.folder.chmod(0o700)
        self.password_file.chmod(0o600)
        self._run("initdb", "-D", str(self.data), "-U", USER, f"--pwfile={self.password_file}",
                  "--auth=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync")
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.folder} "
                   "-c max_connections=200")
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        try:
            self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w", "-t", "60",
                      "-o", options, "start")
        except subprocess.CalledProcessError as err:
            log = (self.folder / "server.log").read_text()[-2000:] if (self.folder / "server.log").exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {err.stderr}\n{log}") from None
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def new_database(self, name: str | None = None) -> str:
        """A new, empty database; returns its URL."""
        import psycopg

        self._count += 1
        name = name or f"test_{os.getpid()}_{self._count}"
        with psycopg.connect(self.url().replace("+psycopg", ""), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-m", "fast", "stop", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print(__doc__, file=sys.stderr)
        return 2
    action, folder = argv
    if action == "start":
        if Path(folder).exists():
            print(f"{folder} exists; give a new folder", file=sys.stderr)
            return 2
        server = ThrowawayPostgres(folder).start(durable=True)
        print(server.new_database("chatbot"))
    else:
        ThrowawayPostgres(folder).stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
