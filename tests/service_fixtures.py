"""Real servers for the tests: PostgreSQL and an sshd, both on 127.0.0.1.

- `postgres`: a throwaway PostgreSQL cluster (Debian's `postgresql` binaries,
  the newest version installed), trust authentication for the `postgres` role.
  Its URLs are what Optuna's RDBStorage (SQLAlchemy) takes, so several worker
  processes can share a study: plain `postgresql://` URLs, which SQLAlchemy
  2.1 and psycopg 3 (the requirements' driver) both take as they are.
  `new_database` gives each test its own database, so studies of different
  tests never meet.
- `sshd`: a throwaway OpenSSH server that lets the current user (root on CI) in
  with a throwaway ed25519 key, so `fab -H ... -i KEY task` runs its remote
  commands over real SSH, on this machine. Fabric adds unknown host keys
  itself (paramiko's AutoAddPolicy) and never reads known_hosts, so the fresh
  host key needs no set-up on the client side.

Neither uses the machine's own services, ports or files: each runs on a free
port, from a folder of its own, and is stopped at teardown. PostgreSQL refuses
to run as root, so as root the cluster belongs to the `postgres` system user
(made by the Debian package) and its folder sits outside pytest's, which only
root may enter.

The programs come from tests/install-services.sh, which `make test` runs. Where
they are missing, the tests that need them fail in CI (which must provide them)
and are skipped elsewhere.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from cloud_fixtures import free_port, missing_service, stop_process

STARTUP_TIMEOUT_S = 60
POSTGRES_LIBS = Path("/usr/lib/postgresql")
SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")  # sshd running as root insists on it; /run is emptied at boot


def _needs(what: str, reason: str) -> NoReturn:
    missing_service(f"{what}: {reason}; tests/install-services.sh (run by `make test`) installs it")


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


# --- PostgreSQL ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Postgres:
    url: str  # postgresql://postgres@127.0.0.1:PORT/postgres, the maintenance database
    port: int
    log: Path

    def new_database(self, name_hint: str) -> str:
        """A new, empty database named after `name_hint` (plus a unique suffix); returns its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        stem = re.sub(r"[^a-z0-9_]+", "_", name_hint.lower()).strip("_")[:40] or "db"
        name = f"{'db_' if stem[0].isdigit() else ''}{stem}_{uuid.uuid4().hex[:8]}"
        # CREATE DATABASE cannot run inside a transaction.
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"


def _postgres_bin() -> Path | None:
    """The bin folder of the newest PostgreSQL that has initdb (Debian installs each under its version)."""
    found = [p.parent for p in POSTGRES_LIBS.glob("*/bin/initdb") if p.parent.parent.name.isdigit()]
    return max(found, key=lambda p: int(p.parent.name), default=None)


def _as_server_user() -> tuple[list[str], pwd.struct_passwd | None]:
    """How to run the server's commands: as root, through runuser as `postgres`; otherwise as we are."""
    if os.geteuid() != 0:
        return [], None
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        _needs("no `postgres` user to run PostgreSQL as (it refuses root)", "the Debian package creates it")
    return ["runuser", "-u", "postgres", "--"], owner


def _pg_ctl_start(pg_ctl: list[str], data: Path, log: Path, sockets: Path, port: int, cwd: Path) -> bool:
    # fsync and friends off: a cluster that lives for one test session never needs to survive a crash.
    options = (f"-p {port} -c listen_addresses=127.0.0.1 -k {sockets} "
               "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    started = subprocess.run([*pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", str(STARTUP_TIMEOUT_S),
                              "-o", options, "start"], cwd=cwd, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return started.returncode == 0


def _wait_for_postgres(url: str) -> None:
    import psycopg

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server for this session; `postgres.new_database("study")` for a database of one's own."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        _needs("no PostgreSQL server programs", f"nothing matches {POSTGRES_LIBS}/*/bin/initdb")
    as_user, owner = _as_server_user()
    # Not under pytest's tmp folder: as root that is closed to the `postgres` user.
    root = Path(tempfile.mkdtemp(prefix="trainer-postgres-"))
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data, log = root / "data", root / "postgres.log"
    pg_ctl = [*as_user, str(bin_dir / "pg_ctl")]
    try:
        made = subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres",
                               "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions"],
                              cwd=root, capture_output=True, text=True, check=False)
        if made.returncode != 0:
            pytest.fail(f"initdb failed:\n{made.stdout[-2000:]}{made.stderr[-2000:]}")
        for _ in range(3):  # another process may take the free port before the server binds it
            port = free_port()
            if _pg_ctl_start(pg_ctl, data, log, root, port, root):
                break
        else:
            pytest.fail(f"PostgreSQL did not start; its log ({log}):\n{_tail(log)}")
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        try:
            _wait_for_postgres(url)
            yield Postgres(url, port, log)
        finally:
            subprocess.run([*pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], cwd=root,
                           stdin=subprocess.DEVNULL, capture_output=True, check=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- sshd ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sshd:
    host: str  # USER@127.0.0.1:PORT, as `fab -H` takes it
    key: Path  # the client's private key (ed25519, no passphrase), as `fab -i` takes it
    user: str
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def fab_args(self) -> list[str]:
        """`run_fab(*sshd.fab_args, "task")`: fab's options for running a task's commands through this server."""
        return ["-H", self.host, "-i", str(self.key)]

    def connection(self):  # -> fabric.Connection
        """A Fabric connection to this server as `user`, what `fab -H host -i key` opens."""
        from fabric import Connection

        return Connection("127.0.0.1", user=self.user, port=self.port,
                          connect_kwargs={"key_filename": str(self.key)})


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "trainer-tests", "-f", str(path)],
                   check=True, capture_output=True)


def _sshd_config(root: Path, port: int, host_key: Path, authorized_keys: Path) -> Path:
    config = root / "sshd_config"
    config.write_text(f"""\
ListenAddress 127.0.0.1
Port {port}
HostKey {host_key}
PidFile {root / "sshd.pid"}
AuthorizedKeysFile {authorized_keys}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
# No PAM: its session modules need a real login set-up. StrictModes would refuse
# the key file under /tmp.
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
# Fabric's put and get use SFTP; the built-in server needs no extra package.
Subsystem sftp internal-sftp
""")
    return config


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _wait_for_login(server: Sshd) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while server.process.poll() is None and not _port_open(server.port):
        if time.monotonic() > deadline:
            return
        time.sleep(0.1)
    error: Exception | None = None
    while server.process.poll() is None and time.monotonic() < deadline:
        try:
            with server.connection() as connection:
                connection.run("true", hide=True, in_stream=False)
            return
        except Exception as exc:  # paramiko's and socket's errors alike: retry until the deadline
            error = exc
            time.sleep(0.2)
    stop_process(server.process)
    pytest.fail(f"cannot log in to sshd on port {server.port} as {server.user} ({error!r}); "
                f"its log ({server.log}):\n{_tail(server.log)}")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """An sshd on 127.0.0.1 that lets the current user in with `sshd.key`; `sshd.fab_args` for `fab`."""
    if not SSHD.is_file():
        _needs("no OpenSSH server", f"{SSHD} is missing (Debian package openssh-server)")
    if not shutil.which("ssh-keygen"):
        _needs("no ssh-keygen", "the openssh-client package provides it")
    root = tmp_path_factory.mktemp("sshd")
    host_key, client_key, authorized_keys = root / "host_key", root / "client_key", root / "authorized_keys"
    _keygen(host_key)
    _keygen(client_key)
    authorized_keys.write_text(client_key.with_suffix(".pub").read_text())
    if os.geteuid() == 0:
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    user = pwd.getpwuid(os.geteuid()).pw_name
    port = free_port()
    config = _sshd_config(root, port, host_key, authorized_keys)
    log = root / "sshd.log"
    with log.open("w") as log_file:
        # -D: stay in the foreground, so the fixture owns the process; -e: log to the log file.
        process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                   stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    server = Sshd(f"{user}@127.0.0.1:{port}", client_key, user, port, process, log)
    try:
        _wait_for_login(server)
        yield server
    finally:
        stop_process(process)
