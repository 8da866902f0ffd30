"""A throwaway PostgreSQL instance on a free loopback port (initdb + pg_ctl), run by a fixture.

PostgreSQL refuses to run as root; when the tests run as root, the server runs as the
`postgres` system user in a directory handed over to it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.servers.idp import free_port


def _as_owner(command: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *command] if owner else command


class Postgres:
    def __init__(self) -> None:
        self.owner = "postgres" if os.geteuid() == 0 else None
        # Not under pytest's tmp_path: its parents are private to root.
        self.dir = Path(tempfile.mkdtemp(prefix="vagt-pg-"))
        if self.owner:
            entry = pwd.getpwnam(self.owner)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self.port = free_port()
        initdb = shutil.which("initdb") or "/usr/lib/postgresql/15/bin/initdb"
        pg_ctl = shutil.which("pg_ctl") or "/usr/lib/postgresql/15/bin/pg_ctl"
        self._pg_ctl = pg_ctl
        subprocess.run(_as_owner([initdb, "-D", str(self.dir / "data"), "-U", "vagt",
                                  "--auth=trust", "-E", "UTF8"], self.owner),
                       check=True, capture_output=True)
        self.start()
        self.url = f"postgresql://vagt@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        subprocess.run(_as_owner([self._pg_ctl, "-D", str(self.dir / "data"), "-w", "-l",
                                  str(self.dir / "log"), "-o",
                                  f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
                                  "start"], self.owner), check=True, capture_output=True)

    def halt(self) -> None:
        """Stop the server, keeping its data (``start`` brings it back on the same port)."""
        subprocess.run(_as_owner([self._pg_ctl, "-D", str(self.dir / "data"), "-m", "immediate",
                                  "stop"], self.owner), check=False, capture_output=True)

    def create_database(self) -> str:
        """A new, empty database on this server: its URL."""
        name = f"vagt_{uuid.uuid4().hex[:12]}"
        subprocess.run(["psql", self.url, "-q", "-c", f"CREATE DATABASE {name}"], check=True,
                       capture_output=True)
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.dir, ignore_errors=True)
