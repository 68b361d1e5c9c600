"""The web tests' rig: a public mount with audit and two accounts with passwords, and
`repfs web` over it on a free port with the certificate it makes, reached with httpx."""

from __future__ import annotations

import os
import secrets
import select
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.helpers import REPFS, Repfs, public_filesystem
from tests.mount.accounts_rig import admin
from tests.seaweed import free_ports

PASSWORD = "correct horse battery staple"


def add_with_password(sock: Path, name: str, password: str = PASSWORD) -> None:
    r, w = os.pipe()
    os.write(w, password.encode())
    os.close(w)
    try:
        res = admin(sock, "users", "add", name, "--email", f"{name}@example.org", "--create-system-user",
                    "--password-fd", str(r), input_fd=r)  # fmt: skip
    finally:
        os.close(r)
    assert res.returncode == 0, res.stdout + res.stderr


@dataclass
class Web:
    fs: Repfs
    sock: Path  # the admin socket
    url: str
    cert: Path
    state: Path
    proc: subprocess.Popen[bytes]
    log: Path
    names: list[str]
    args: tuple[str, ...] = ()  # what `repfs web` was started with
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        trust = ssl.create_default_context(cafile=str(self.cert))
        c = httpx.Client(base_url=self.url, verify=trust, headers=headers, timeout=60)
        self.clients.append(c)
        return c

    def sign_in(self, name: str, password: str = PASSWORD) -> httpx.Client:
        res = self.client().post("/api/v1/token", json={"login": name, "password": password})
        assert res.status_code == 201, res.text
        return self.client(res.json()["token"])

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_web(
    fs: Repfs, state: Path, *extra: str, host: str = "127.0.0.1"
) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_ports(1)[0]
    log = state.parent / f"web-{port}.log"
    r, w = os.pipe()
    cmd = [*REPFS, "web", str(fs.mnt), "--bind", f"{host}:{port}", "--state-dir", str(state),
           "--ready-fd", str(w), "--log", str(log), *extra]  # fmt: skip
    with open(state.parent / f"web-{port}.err", "wb") as err:
        proc = subprocess.Popen(cmd, pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    os.close(w)
    answer = b""
    deadline = time.monotonic() + 60
    try:
        while not answer.endswith(b"\n") and select.select([r], [], [], max(0.0, deadline - time.monotonic()))[0]:
            chunk = os.read(r, 1024)
            if not chunk:
                break
            answer += chunk
    finally:
        os.close(r)
    if not answer.startswith(b"ok "):
        proc.kill()
        proc.wait(timeout=30)
        said = (state.parent / f"web-{port}.err").read_text(errors="replace")
        raise AssertionError(f"repfs web did not start ({answer!r}):\n{log.read_text() if log.exists() else ''}{said}")
    return proc, answer.decode().split()[1], log


def stop_web(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def web(request: pytest.FixtureRequest) -> Iterator[Web]:
    sock = Path(tempfile.mkdtemp(prefix="repfs-adm-", dir="/tmp")) / "s"
    names = [f"wt{secrets.token_hex(3)}" for _ in range(3)]
    group = f"wta{secrets.token_hex(3)}"  # the admin group: the second account is in it
    with public_filesystem(None, "--admin-socket", str(sock), "--audit") as fs:
        try:
            for name in names:
                add_with_password(sock, name)
            subprocess.run(["groupadd", group], check=True, timeout=30)
            subprocess.run(["usermod", "-aG", group, names[1]], check=True, timeout=30)
            state = fs.base / "web"
            extra = ("--admin-socket", str(sock), "--admin-group", group)
            proc, url, log = start_web(fs, state, *extra)
            rig = Web(fs, sock, url, state / "cert.pem", state, proc, log, names, extra)
            try:
                yield rig
            finally:
                for c in rig.clients:
                    c.close()
                stop_web(rig.proc)
        finally:
            for name in names:
                subprocess.run(["userdel", name], capture_output=True, timeout=30)
                subprocess.run(["groupdel", name], capture_output=True, timeout=30)
            subprocess.run(["groupdel", group], capture_output=True, timeout=30)
