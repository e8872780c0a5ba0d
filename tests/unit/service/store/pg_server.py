"""A throwaway PostgreSQL server for tests: initdb into a temp dir (as the `postgres` user when
running as root, as environment.md requires), a free port, the unix socket inside the temp dir."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.tools import pg_bin_dir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    def __init__(self) -> None:
        bindir = pg_bin_dir()
        if bindir is None:
            pytest.skip("PostgreSQL binaries (initdb) are not installed: "
                        "apt-get install postgresql")
        self.bindir = Path(bindir)
        self.root = Path(tempfile.mkdtemp(prefix="saferlhf-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                pytest.skip("running as root needs `runuser` to start PostgreSQL as postgres")
            self._as = [runuser, "-u", "postgres", "--"]
            os.chmod(self.root, 0o755)
            shutil.chown(self.root, "postgres")
        self._run([str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust",
                   "-U", "postgres", "--no-sync", "-E", "UTF8"])
        self.start_server()
        self._n = 0

    def start_server(self) -> None:
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-l",
                   str(self.root / "server.log"), "-o",
                   f"-p {self.port} -k {self.root} -c listen_addresses='' -c fsync=off",
                   "start"])

    def stop_server(self, mode: str = "immediate") -> None:
        """Stop the server (the chaos suite's database outage); `start_server` brings it back
        on the same port and data."""
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                   "stop"])

    def _run(self, cmd: list[str]) -> None:
        proc = subprocess.run([*self._as, *cmd], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {proc.stdout}\n{proc.stderr}")

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@/{db}?host={self.root}&port={self.port}"

    def fresh_database(self) -> str:
        import psycopg

        self._n += 1
        name = f"t{self._n}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                       "stop"])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
