"""A throwaway PostgreSQL cluster from the Debian `postgresql` binaries, for tests and benchmarks.

initdb + pg_ctl on a private port and socket directory, trust authentication, fsync off. PostgreSQL refuses to
run as root, so as root the server runs as the `postgres` user (`runuser`). `TAXI_TEST_PG_DSN` replaces all this
with a server of your own.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from typing import List, Optional


def find_bin_dir() -> Optional[str]:
    """The newest `/usr/lib/postgresql/<version>/bin` that has initdb, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return os.path.dirname(found[-1]) if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    """A running throwaway cluster; `dsn(db)` gives a connection string (any password works: trust auth)."""

    base: str
    port: int
    bin_dir: str
    as_user: List[str]

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        data = os.path.join(self.base, "data")
        subprocess.run(
            [*self.as_user, os.path.join(self.bin_dir, "pg_ctl"), "-D", data, "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.base, ignore_errors=True)


def start_cluster(*settings: str) -> Cluster:
    """Start a cluster, with extra `name=value` server settings; RuntimeError naming the fix when it cannot."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql (apt-get install postgresql)")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base = tempfile.mkdtemp(prefix="taxi_pg_")
    if as_user:
        shutil.chown(base, "postgres", "postgres")
    data, log, port = os.path.join(base, "data"), os.path.join(base, "server.log"), _free_port()

    def run(*cmd: str) -> None:
        done = subprocess.run([*as_user, *cmd], capture_output=True, text=True, cwd=base)
        if done.returncode != 0:
            tail = open(log).read()[-2000:] if os.path.exists(log) else ""
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()} {tail}")

    run(os.path.join(bin_dir, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    options += "".join(f" -c {setting}" for setting in settings)
    run(os.path.join(bin_dir, "pg_ctl"), "-D", data, "-l", log, "-o", options, "-w", "start")
    return Cluster(base, port, bin_dir, as_user)
