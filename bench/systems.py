"""The systems under test, one class each: setup(), mount(), unmount(), pid(), cleanup().

Every daemon runs in the foreground as our child (so its pid is the one measured, and it
gets SIGTERM if the bench dies); readiness is its mount showing up in
/proc/self/mountinfo. `cold_remount()` unmounts, gives the system a fresh, empty cache
directory and mounts again: reads after it come from the pools, not from a local copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from bench.proc import BenchError, Daemon, ProcStats, detach, mounted_fstype, proc_stats, run, tool, wait_for
from bench.servers import Bucket, S3Site, free_ports

REPFS = [sys.executable, "-m", "repfs.cli"]
PASSTHROUGH = Path(__file__).resolve().parent / "passthrough.py"
REPLICAS = 2


@dataclass
class Env:
    work: Path  # this run's scratch directory
    site: S3Site | None  # the SeaweedFS servers, when an S3 system runs
    repfs_args: tuple[str, ...] = ()  # more `repfs mount` options (--repfs-option), e.g. --pack-max=1M


class System(ABC):
    """A filesystem mounted at `self.mnt`; the workloads run in `self.root`."""

    name: ClassVar[str]
    title: ClassVar[str]
    needs_s3: ClassVar[bool] = False

    def __init__(self, env: Env) -> None:
        self.env = env
        self.dir = env.work / self.name
        self.mnt = self.dir / "mnt"
        self.daemon: Daemon | None = None
        self.generation = 0  # bumped by every cold remount: a new cache directory
        self.peak_rss = 0
        self.buckets: list[Bucket] = []

    # --- what subclasses give ---------------------------------------------------------
    @abstractmethod
    def daemon_cmd(self) -> list[str]: ...

    def daemon_env(self) -> dict[str, str]:
        return {}

    def prepare(self) -> None:
        """Make the filesystem (mkfs, format, buckets); runs once, before the first mount."""
        return None

    def stop_daemon(self) -> None:
        run(["fusermount3", "-u", str(self.mnt)], timeout=60)

    def settle(self) -> None:
        """Wait until what was written is stored (for systems whose fsync does not)."""
        return None

    def details(self) -> dict[str, Any]:
        return {}

    # --- the life cycle ----------------------------------------------------------------
    @property
    def root(self) -> Path:
        return self.mnt

    @property
    def cache_dir(self) -> Path:
        return self.dir / f"cache{self.generation}"

    def pid(self) -> int | None:
        return self.daemon.pid if self.daemon is not None else None

    def setup(self) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.mnt.mkdir(parents=True)
        if self.needs_s3 and self.env.site is None:
            raise BenchError("no S3 servers")
        self.prepare()

    def mount(self) -> None:
        if mounted_fstype(self.mnt) is not None:
            raise BenchError(f"{self.mnt} is already mounted")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.daemon = Daemon(self.name, self.daemon_cmd(), self.dir / "daemon.log", self.daemon_env())
        self.daemon.start()
        self.daemon.wait_mounted(self.mnt)

    def sample(self) -> ProcStats | None:
        """The daemon's peak RSS and CPU now (the peak is kept across daemons)."""
        pid = self.pid()
        stats = proc_stats(pid) if pid is not None else None
        if stats is not None:
            self.peak_rss = max(self.peak_rss, stats.peak_rss)
        return stats

    def unmount(self) -> None:
        daemon = self.daemon
        if daemon is None:
            return
        self.sample()
        try:
            if daemon.pid is not None:
                self.stop_daemon()
            if not daemon.wait_exit(60):
                raise BenchError(f"{self.name} did not exit after unmount")
        finally:
            self.daemon = None
            if daemon.pid is not None:
                daemon.kill()
            detach(self.mnt)

    def cold_remount(self) -> None:
        """Unmount, start again with a fresh empty cache directory."""
        self.unmount()
        shutil.rmtree(self.cache_dir, ignore_errors=True)
        self.generation += 1
        self.mount()

    def abort(self) -> None:
        """Kill the daemon and detach its mount: frees any process blocked on it."""
        if self.daemon is not None:
            self.sample()
            self.daemon.kill()
            self.daemon = None
        detach(self.mnt)

    def cleanup(self) -> None:
        with contextlib.suppress(BenchError):
            self.unmount()
        self.abort()
        if self.env.site is not None and self.buckets:
            self.env.site.remove(self.buckets)
            self.buckets = []
        if mounted_fstype(self.mnt) is None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 5) -> str:
        return self.daemon.log_tail(lines) if self.daemon is not None else ""

    # --- helpers ------------------------------------------------------------------------
    def secret_file(self, name: str, text: str) -> Path:
        path = self.dir / name
        path.write_text(text)
        path.chmod(0o600)
        return path

    @property
    def site(self) -> S3Site:
        assert self.env.site is not None
        return self.env.site


# --- the disk and the Python FUSE ceiling ---------------------------------------------------


class LocalDir(System):
    name = "local-dir"
    title = "a plain directory on the local disk: the disk's ceiling"

    @property
    def root(self) -> Path:
        return self.dir / "data"

    def daemon_cmd(self) -> list[str]:
        return []

    def prepare(self) -> None:
        self.root.mkdir()

    def mount(self) -> None:
        pass

    def unmount(self) -> None:
        pass

    def cold_remount(self) -> None:
        pass  # the runner drops the page cache


class Passthrough(System):
    name = "passthrough"
    title = "bench/passthrough.py: a minimal pyfuse3 passthrough of a local directory (Python FUSE ceiling)"

    def prepare(self) -> None:
        (self.dir / "backing").mkdir()

    def daemon_cmd(self) -> list[str]:
        return [sys.executable, str(PASSTHROUGH), str(self.dir / "backing"), str(self.mnt)]


# --- repfs -----------------------------------------------------------------------------------


class Repfs(System):
    """repfs with default mount options; subclasses give the pools."""

    def pool_args(self) -> list[str]:
        raise NotImplementedError

    @property
    def fs_dir(self) -> Path:
        return self.dir / "fs"

    @property
    def key(self) -> Path:
        return self.dir / "keyfile"

    def prepare(self) -> None:
        self.secret_file("keyfile", os.urandom(32).hex())
        run([*REPFS, "mkfs", str(self.fs_dir), *self.pool_args(), "--replicas", str(REPLICAS),
             "--key-file", str(self.key)], timeout=120)  # fmt: skip

    def daemon_cmd(self) -> list[str]:
        return [*REPFS, "mount", "--foreground", "--key-file", str(self.key), "--cache-dir", str(self.cache_dir),
                *self.env.repfs_args, str(self.fs_dir), str(self.mnt)]  # fmt: skip

    def stop_daemon(self) -> None:
        run([*REPFS, "umount", str(self.mnt)], timeout=600)

    def details(self) -> dict[str, Any]:
        with contextlib.suppress(OSError):
            return {"config": (self.fs_dir / "repfs.toml").read_text(), "mount_options": list(self.env.repfs_args)}
        return {}


class RepfsLocal(Repfs):
    name = "repfs-local"
    title = "repfs, embedded default: 3 local directory pools, 2 replicas, 4 MiB blocks"

    def pool_args(self) -> list[str]:
        return [a for i in (1, 2, 3) for a in ("--pool", f"file://{self.dir / 'pools' / f'pool{i}'}")]


class RepfsS3(Repfs):
    name = "repfs-s3"
    title = "repfs, 3 SeaweedFS pools (buckets), 2 replicas, 4 MiB blocks"
    needs_s3 = True

    def pool_args(self) -> list[str]:
        self.buckets = self.site.new_buckets("repfs", 3)
        creds = self.secret_file(
            "s3.credentials", f'access_key = "{self.site.access_key}"\nsecret_key = "{self.site.secret_key}"\n'
        )
        args = ["--credentials-file", str(creds)]
        for b in self.buckets:
            args += ["--pool", f"s3+http://{b.endpoint}/{b.name}"]
        return args


# --- the peers -------------------------------------------------------------------------------


class JuiceFS(System):
    name = "juicefs"
    title = "JuiceFS: sqlite metadata, zstd, RSA-wrapped AES-GCM encryption, one SeaweedFS bucket"
    needs_s3 = True
    passphrase = "repfs-bench-juicefs"

    @property
    def meta_url(self) -> str:
        return f"sqlite3://{self.dir / 'meta.db'}"

    def daemon_env(self) -> dict[str, str]:
        return {"JFS_RSA_PASSPHRASE": self.passphrase}

    def prepare(self) -> None:
        self.buckets = self.site.new_buckets("juicefs", 1)
        key = self.dir / "rsa.pem"
        env = {**os.environ, **self.daemon_env()}
        run(["openssl", "genrsa", "-aes256", "-passout", "env:JFS_RSA_PASSPHRASE", "-out", str(key), "2048"], env=env)
        key.chmod(0o600)
        b = self.buckets[0]
        run([tool("juicefs"), "format", "--storage", "s3", "--bucket", b.http_url,
             "--access-key", self.site.access_key, "--secret-key", self.site.secret_key,
             "--compress", "zstd", "--encrypt-rsa-key", str(key), "--trash-days", "0", "--no-update",
             self.meta_url, "bench"], env=env, timeout=120)  # fmt: skip

    def daemon_cmd(self) -> list[str]:
        return [tool("juicefs"), "mount", "--no-usage-report", "--cache-dir", str(self.cache_dir),
                self.meta_url, str(self.mnt)]  # fmt: skip


class Rclone(System):
    name = "rclone"
    title = "rclone mount --vfs-cache-mode writes, one SeaweedFS bucket (uploads after close)"
    needs_s3 = True

    def __init__(self, env: Env) -> None:
        super().__init__(env)
        self.rc_port = 0

    def daemon_env(self) -> dict[str, str]:
        b = self.buckets[0]
        return {
            "RCLONE_CONFIG_BENCH_TYPE": "s3",
            "RCLONE_CONFIG_BENCH_PROVIDER": "SeaweedFS",
            "RCLONE_CONFIG_BENCH_ENDPOINT": f"http://{b.endpoint}",
            "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": self.site.access_key,
            "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": self.site.secret_key,
            "RCLONE_CONFIG_BENCH_REGION": "us-east-1",
        }

    def prepare(self) -> None:
        self.buckets = self.site.new_buckets("rclone", 1)

    def daemon_cmd(self) -> list[str]:
        self.rc_port = free_ports(1)[0]
        return [tool("rclone"), "mount", f"bench:{self.buckets[0].name}", str(self.mnt), "--config", "/dev/null",
                "--vfs-cache-mode", "writes", "--cache-dir", str(self.cache_dir),
                "--rc", "--rc-addr", f"127.0.0.1:{self.rc_port}", "--rc-no-auth"]  # fmt: skip

    def _pending_uploads(self) -> int:
        req = urllib.request.Request(f"http://127.0.0.1:{self.rc_port}/vfs/stats", data=b"{}", method="POST")
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as resp:
            cache = json.load(resp).get("diskCache", {})
        return int(cache.get("uploadsInProgress", 0)) + int(cache.get("uploadsQueued", 0))

    def settle(self) -> None:
        if self.pid() is None:
            return
        try:
            if not wait_for(lambda: self._pending_uploads() == 0, timeout=900, interval=0.2):
                raise BenchError("rclone uploads still pending after 900 s")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise BenchError(f"rclone rc: {exc}") from None

    def stop_daemon(self) -> None:
        self.settle()  # rclone does not wait for its uploads at unmount
        super().stop_daemon()


class S3fs(System):
    name = "s3fs"
    title = "s3fs-fuse, one SeaweedFS bucket (path-style requests)"
    needs_s3 = True

    def prepare(self) -> None:
        self.buckets = self.site.new_buckets("s3fs", 1)
        self.secret_file("passwd", f"{self.site.access_key}:{self.site.secret_key}\n")

    def daemon_cmd(self) -> list[str]:
        b = self.buckets[0]
        opts = (f"url=http://{b.endpoint},use_path_request_style,endpoint=us-east-1,dbglevel=warn,"
                f"passwd_file={self.dir / 'passwd'},tmpdir={self.cache_dir}")  # fmt: skip
        return [tool("s3fs"), b.name, str(self.mnt), "-f", "-o", opts]


SYSTEMS: list[type[System]] = [LocalDir, Passthrough, RepfsLocal, RepfsS3, JuiceFS, Rclone, S3fs]
PEERS = ("juicefs", "rclone", "s3fs")


def by_name(names: list[str]) -> list[type[System]]:
    known = {s.name: s for s in SYSTEMS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown systems: {', '.join(unknown)} (known: {', '.join(known)})")
    return [known[n] for n in names]
