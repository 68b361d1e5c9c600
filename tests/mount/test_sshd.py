"""The sshd recipe of contrib/sshd on a real mount: OpenSSH's server on a loopback port
with repfs.conf as shipped (only the mount point put in), accounts that log in with a
key, sftp, scp and rsync landing in their own namespace and nowhere else."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Repfs, public_filesystem, wait_for
from tests.mount.accounts_rig import add, ids

pytestmark = pytest.mark.timeout(240)

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "sshd"
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sshd:
    """sshd on 127.0.0.1 with the recipe for the mount at `mnt`; client keys per user."""

    def __init__(self, mnt: Path, work: Path) -> None:
        self.work = work
        self.port = free_port()
        keys = work / "authorized"
        keys.mkdir(mode=0o755)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "host")], check=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "client")], check=True)
        self.key = work / "client"
        lib = work / "lib"
        lib.mkdir(mode=0o755)
        forced = lib / "rrsync-namespace"
        shutil.copy(CONTRIB / "rrsync-namespace", forced)
        forced.chmod(0o755)
        recipe = (CONTRIB / "repfs.conf").read_text()
        recipe = recipe.replace("/usr/local/lib/repfs/rrsync-namespace", str(forced)).replace("/mnt/repfs", str(mnt))
        config = work / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {work / 'host'}\nPidFile none\n"
            f"AuthorizedKeysFile {keys}/%u\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UsePAM no\nStrictModes no\nLogLevel VERBOSE\n"
            "Subsystem sftp internal-sftp\n" + recipe
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege separation folder
        subprocess.run([SSHD, "-t", "-f", str(config)], check=True, capture_output=True, timeout=30)
        self.log = (work / "sshd.log").open("wb")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=self.log, stderr=self.log)
        assert wait_for(self._answers, 15), self.log_text()

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                return s.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    def allow(self, user: str) -> None:
        path = self.work / "authorized" / user
        path.write_text((self.work / "client.pub").read_text())
        path.chmod(0o644)

    def ssh_options(self) -> list[str]:
        return ["-i", str(self.key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]  # fmt: skip

    def sftp(self, user: str, batch: str) -> subprocess.CompletedProcess[str]:
        script = self.work / "batch"
        script.write_text(batch)
        return subprocess.run(
            ["sftp", "-b", str(script), "-P", str(self.port), *self.ssh_options(), f"{user}@127.0.0.1"],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def scp(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["scp", "-P", str(self.port), *self.ssh_options(), *args],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip

    def rsync(self, *args: str) -> subprocess.CompletedProcess[str]:
        shell = " ".join(["ssh", "-p", str(self.port), *self.ssh_options()])
        return subprocess.run(["rsync", "-e", shell, *args], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)  # fmt: skip

    def log_text(self) -> str:
        self.log.flush()
        return (self.work / "sshd.log").read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture
def sshd_mount(request: pytest.FixtureRequest) -> Iterator[tuple[Repfs, Path, Sshd]]:
    """A public mount under /srv (sshd refuses a chroot below a folder others may write,
    like /tmp) and sshd with the recipe for it."""
    if not os.path.exists(SSHD):
        pytest.fail("sshd is missing: the test install (scripts/install.sh --dev) installs openssh-server")
    under = Path(tempfile.mkdtemp(prefix="repfs-sshd-", dir="/srv"))
    under.chmod(0o755)
    sock = Path(tempfile.mkdtemp(prefix="repfs-adm-", dir="/tmp")) / "s"
    try:
        with public_filesystem(request.node, "--admin-socket", str(sock), under=under) as fs:
            fs.mnt.chmod(0o755)  # as the recipe says: sshd's chroot may not be group-writable
            work = Path(tempfile.mkdtemp(prefix="sshd-", dir=under))
            work.chmod(0o755)
            sshd = Sshd(fs.mnt, work)
            try:
                yield fs, sock, sshd
            finally:
                sshd.stop()
    finally:
        shutil.rmtree(under, ignore_errors=True)
        shutil.rmtree(sock.parent, ignore_errors=True)


def test_sftp_scp_and_rsync_put_each_account_in_its_namespace(
    sshd_mount: tuple[Repfs, Path, Sshd], names: list[str], tmp_path: Path
) -> None:
    fs, sock, sshd = sshd_mount
    alice, bob = names[0], names[1]
    for group in ("repfs-sftp", "repfs-rsync"):
        subprocess.run(["groupadd", "-f", group], check=True, timeout=30)
    add(sock, alice)
    add(sock, bob)
    subprocess.run(["usermod", "-a", "-G", "repfs-sftp", alice], check=True, timeout=30)
    subprocess.run(["usermod", "-a", "-G", "repfs-rsync", "-s", "/bin/sh", bob], check=True, timeout=30)
    sshd.allow(alice)
    sshd.allow(bob)
    a_uid, _ = ids(alice)
    b_uid, _ = ids(bob)
    local = tmp_path / "report.bin"
    data = os.urandom(300_000)
    local.write_bytes(data)

    # sftp: starts in /alice, writes there, cannot enter /bob nor write at the top
    res = sshd.sftp(alice, f"pwd\nput {local} report.bin\nmkdir sub\nput {local} sub/again.bin\nls -l\n")
    assert res.returncode == 0, res.stdout + res.stderr + sshd.log_text()
    assert f"/{alice}" in res.stdout
    assert (fs.mnt / alice / "report.bin").read_bytes() == data
    assert (fs.mnt / alice / "sub" / "again.bin").stat().st_uid == a_uid
    for bad in (f"ls /{bob}", f"put {local} /{bob}/x", f"put {local} /top.bin", "mkdir /newtop"):
        res = sshd.sftp(alice, bad + "\n")
        assert res.returncode != 0, (bad, res.stdout)
    assert not (fs.mnt / bob / "x").exists() and not (fs.mnt / "top.bin").exists()
    # scp (sftp underneath): in and out of the namespace
    assert sshd.scp(str(local), f"{alice}@127.0.0.1:copy.bin").returncode == 0
    assert (fs.mnt / alice / "copy.bin").read_bytes() == data
    back = tmp_path / "back.bin"
    res = sshd.scp(f"{alice}@127.0.0.1:report.bin", str(back))
    assert res.returncode == 0 and back.read_bytes() == data, res.stderr
    # no shell for a sftp account
    res = subprocess.run(["ssh", "-p", str(sshd.port), *sshd.ssh_options(), f"{alice}@127.0.0.1", "id"],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
    assert "uid=" not in res.stdout

    # rsync: a tree into /bob, and nothing outside it
    tree = tmp_path / "tree"
    (tree / "deep").mkdir(parents=True)
    (tree / "a.txt").write_text("alpha\n")
    (tree / "deep" / "b.bin").write_bytes(data)
    res = sshd.rsync("-a", f"{tree}/", f"{bob}@127.0.0.1:backup/")
    assert res.returncode == 0, res.stdout + res.stderr + sshd.log_text()
    assert (fs.mnt / bob / "backup" / "deep" / "b.bin").read_bytes() == data
    assert (fs.mnt / bob / "backup" / "a.txt").stat().st_uid == b_uid
    again = sshd.rsync("-a", "--itemize-changes", f"{tree}/", f"{bob}@127.0.0.1:backup/")
    assert again.returncode == 0 and again.stdout.strip() == ""  # nothing to send twice
    res = sshd.rsync("-a", f"{tree}/", f"{bob}@127.0.0.1:../{alice}/")
    assert res.returncode != 0 and not (fs.mnt / alice / "a.txt").exists(), res.stdout
    marker = f"repfs-sshd-{os.urandom(4).hex()}"
    res = sshd.rsync("-a", f"{tree}/", f"{bob}@127.0.0.1:/{marker}/")  # an absolute path is inside too
    assert res.returncode == 0 and not Path("/", marker).exists(), res.stderr
    assert (fs.mnt / bob / marker / "a.txt").read_text() == "alpha\n"
    res = subprocess.run(["ssh", "-p", str(sshd.port), *sshd.ssh_options(), f"{bob}@127.0.0.1", "id"],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
    assert "uid=" not in res.stdout
