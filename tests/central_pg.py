"""A throwaway PostgreSQL cluster for the centre's tests: initdb + pg_ctl from
/usr/lib/postgresql/*/bin on a free port, run as an unprivileged user (postgres refuses to run
as root: as root the binaries run through `su` as the ``postgres`` system user), trust auth on
127.0.0.1 only, a database of its own per test. Skips only when the binaries are missing
(.ci/run installs them).
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker import free_port


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class Cluster:
    def __init__(self) -> None:
        bindir = pg_bin()
        if bindir is None:
            pytest.skip("PostgreSQL binaries not installed (apt-get install postgresql)")
        self.bin = bindir
        self.root = Path(tempfile.mkdtemp(prefix="gatectl-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user is not None:
            shutil.chown(self.root, self.user)
            os.chmod(self.root, 0o700)

    def _run(self, *argv: str) -> None:
        cmd = [str(a) for a in argv]
        if self.user is not None:
            cmd = ["su", "-s", "/bin/sh", self.user, "-c", shlex.join(cmd)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {r.stdout[-2000:]} {r.stderr[-2000:]}")

    def start(self) -> None:
        self._run(self.bin / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync")
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories={self.root} -c fsync=on -c max_connections=100")
        self._run(self.bin / "pg_ctl", "-D", self.data, "-o", opts, "-w", "-t", "60",
                  "-l", self.root / "log", "start")

    def stop(self) -> None:
        try:
            self._run(self.bin / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return self.url(name)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    c = Cluster()
    c.start()
    yield c
    c.stop()
