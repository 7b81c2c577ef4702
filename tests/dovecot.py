"""A throwaway Dovecot IMAP server on loopback, for the IMAP tests and benchmark.

`Dovecot().start()` writes a config in a fresh folder under /tmp (plain IMAP
on a free 127.0.0.1 port, one passwd-file per user, Maildir homes there) and runs
`dovecot -F`; `add_user()` creates a fresh account, so tests sharing one
server never see each other's mail. Works as root (mail owned by `nobody`)
and as an ordinary user (every Dovecot service runs as that user).
"""

from __future__ import annotations

import getpass
import grp
import imaplib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

NOBODY = 65534
CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
protocols = imap
listen = 127.0.0.1
mail_location = maildir:~/Maildir
mail_fsync = never
mail_max_userip_connections = 200
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/passwd/%u
}}
userdb {{
  driver = passwd-file
  args = {root}/passwd/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = {tls_port}
  }}
}}
{tls}
{unprivileged}
{extra}
"""
TLS = """\
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
"""
UNPRIVILEGED = """\
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""


def binary() -> str | None:
    return shutil.which("dovecot") or next(
        (p for p in ("/usr/sbin/dovecot",) if os.access(p, os.X_OK)), None
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Account:
    """One IMAP login on the test server."""

    host: str
    port: int
    username: str
    password: str

    def connect(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4(self.host, self.port, timeout=30)
        client.login(self.username, self.password)
        return client

    def append(self, messages: list[bytes], folder: str = "INBOX") -> None:
        client = self.connect()
        try:
            for raw in messages:
                status, detail = client.append(folder, None, None, raw)
                assert status == "OK", detail
        finally:
            client.logout()

    def uids(self, folder: str = "INBOX", criteria: str = "ALL") -> list[int]:
        client = self.connect()
        try:
            client.select(folder, readonly=True)
            status, data = client.uid("SEARCH", criteria)
            assert status == "OK", data
            return [int(n) for n in data[0].split()]
        finally:
            client.logout()

    def create(self, folder: str) -> None:
        client = self.connect()
        try:
            status, detail = client.create(folder)
            assert status == "OK", detail
        finally:
            client.logout()


class Dovecot:
    """One Dovecot master process; `stop()` ends it."""

    def __init__(self, extra: str = "", tls: bool = False) -> None:
        # Under /tmp, traversable: as root the mail processes run as nobody.
        self.root = Path(tempfile.mkdtemp(prefix="ticketd-dovecot-"))
        self.root.chmod(0o711)
        self.extra = extra
        self.tls = tls
        self.port = free_port()
        self.tls_port = free_port() if tls else 0
        self.host = "127.0.0.1"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Dovecot:
        program = binary()
        assert program is not None, "dovecot is not installed"
        for sub in ("run", "state", "homes", "passwd"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        if self.tls:
            self._make_certificate()
        config = self.root / "dovecot.conf"
        config.write_text(self._config(), encoding="utf-8")
        self.process = subprocess.Popen([program, "-F", "-c", str(config)])
        self._wait_listening()
        return self

    def _make_certificate(self) -> None:
        """A self-signed certificate for localhost (needs the openssl command)."""
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
                "-keyout",
                str(self.root / "key.pem"),
                "-out",
                str(self.root / "cert.pem"),
            ],
            check=True,
            capture_output=True,
        )

    def restart(self) -> None:
        """Stop the master (dropping every connection) and start it again, mail kept."""
        assert self.process is not None
        self.process.terminate()
        self.process.wait(15)
        assert binary() is not None
        self.process = subprocess.Popen(
            [str(binary()), "-F", "-c", str(self.root / "dovecot.conf")]
        )
        self._wait_listening()

    def _config(self) -> str:
        unprivileged = ""
        if os.geteuid() != 0:
            unprivileged = UNPRIVILEGED.format(
                user=getpass.getuser(), group=grp.getgrgid(os.getgid()).gr_name
            )
        return CONFIG.format(
            root=self.root,
            port=self.port,
            tls_port=self.tls_port,
            tls=TLS.format(root=self.root) if self.tls else "",
            unprivileged=unprivileged,
            extra=self.extra,
        )

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.log()}")
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"dovecot did not listen on {self.port}: {self.log()}")

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def add_user(self, password: str = "secret") -> Account:
        """A new account with an empty Maildir."""
        name = f"u{uuid.uuid4().hex[:10]}"
        home = self.root / "homes" / name
        home.mkdir()
        uid, gid = (NOBODY, NOBODY) if os.geteuid() == 0 else (os.getuid(), os.getgid())
        if os.geteuid() == 0:
            os.chown(home, uid, gid)
        # One passwd-file per user: Dovecot never has to notice a file growing.
        entry = f"{name}:{{PLAIN}}{password}:{uid}:{gid}::{home}::\n"
        (self.root / "passwd" / name).write_text(entry, encoding="utf-8")
        return Account(self.host, self.port, name, password)

    def stop(self) -> None:
        """SIGTERM to the master, then remove its folder."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None
        shutil.rmtree(self.root, ignore_errors=True)
