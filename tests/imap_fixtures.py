"""A private dovecot IMAP server for the privacy-mailbox tests (Debian's ``dovecot-imapd``).

``imap_server`` starts one dovecot per test on a free loopback port with a temporary configuration:
passwd-file authentication, plaintext login allowed (loopback only, no TLS), maildir under a temporary
directory, its base_dir and state_dir there too. Run as root (CI), dovecot's own ``dovecot`` and
``dovenull`` users are its internal and login users and own the mail; run as anyone else, that user is
all three (tried as ``nobody``). No chroot: a non-root dovecot cannot, and this one only listens on
loopback for one test. ``append(raw)`` puts a message in the INBOX over IMAP (APPEND), as delivery would.
Skipped with a printed reason where dovecot is missing; in CI (``CI`` set) that is a failure instead.
"""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER, PASSWORD = "privacy", "mailbox-test-password"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dovecot:
    def __init__(self) -> None:
        # Short path (unix socket names are limited to 108 bytes) that dovecot's users can traverse.
        self.root = Path(tempfile.mkdtemp(prefix="dovecot-"))
        self.root.chmod(0o755)
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"imap://{USER}:{PASSWORD}@127.0.0.1:{self.port}/INBOX"

    def _users(self) -> tuple[str, str, pwd.struct_passwd]:
        if os.geteuid() == 0:
            internal, login = pwd.getpwnam("dovecot"), pwd.getpwnam("dovenull")
            return internal.pw_name, login.pw_name, internal
        me = pwd.getpwuid(os.geteuid())
        return me.pw_name, me.pw_name, me

    def start(self) -> Dovecot:
        internal, login, owner = self._users()
        mail = self.root / "mail"
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir()
        if os.geteuid() == 0:
            os.chown(mail, owner.pw_uid, owner.pw_gid)
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
        (self.root / "dovecot.conf").write_text(
            f"""
base_dir = {self.root}/run
state_dir = {self.root}/state
instance_name = dovecot-test-{self.port}
log_path = {self.root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_internal_group = {grp.getgrgid(owner.pw_gid).gr_name}
default_login_user = {login}
first_valid_uid = {owner.pw_uid}
last_valid_uid = {owner.pw_uid}
mail_location = maildir:{mail}/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.root}/passwd
}}
userdb {{
  driver = static
  args = uid={owner.pw_uid} gid={owner.pw_gid} home={mail}/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""
        )
        self.proc = subprocess.Popen(  # noqa: S603 - a local test server
            [DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=2)
                conn.logout()
                return self
            except (OSError, imaplib.IMAP4.error):  # not listening yet, or its login process not up
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    died = self.proc.poll() is not None
                    err = self.proc.stderr.read().decode(errors="replace")[-2000:] if died and self.proc.stderr else ""
                    log = self.log()
                    self.stop()
                    raise RuntimeError(f"dovecot did not start: {err} {log}") from None
                time.sleep(0.1)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text()[-2000:] if path.exists() else ""

    def session(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        conn.login(USER, PASSWORD)
        return conn

    def append(self, raw: bytes | str, folder: str = "INBOX", arrived=None) -> int:
        """APPEND a message (``arrived``: the server's receipt time, INTERNALDATE); returns its UID."""
        data = raw.encode() if isinstance(raw, str) else raw
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        conn = self.session()
        try:
            typ, resp = conn.append(folder, None, arrived, data)
            assert typ == "OK", resp
            code = resp[0].decode()  # [APPENDUID <validity> <uid>] ...
            return int(code.split("APPENDUID ", 1)[1].split("]", 1)[0].split()[1])
        finally:
            conn.logout()

    def uids(self, folder: str = "INBOX") -> list[int]:
        conn = self.session()
        try:
            conn.select(folder, readonly=True)
            _, data = conn.uid("SEARCH", None, "ALL")
            return [int(u) for u in (data[0] or b"").split()]
        finally:
            conn.logout()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def imap_server():
    if not Path(DOVECOT).exists():
        if os.environ.get("CI"):
            pytest.fail("dovecot is missing: CI must run the mailbox tests (.ci/run installs dovecot-imapd)")
        print("skipping mailbox tests: dovecot is missing (apt-get install dovecot-imapd)")
        pytest.skip("dovecot is missing (apt-get install dovecot-imapd)")
    server = Dovecot().start()
    try:
        yield server
    finally:
        server.stop()
