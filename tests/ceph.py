"""Run a single-node Ceph cluster with an S3 gateway (radosgw) for tests.

    with CephCluster(tmp_path / "ceph") as ceph:       # starts; stops on exit
        bucket = ceph.make_bucket()
        url = ceph.url(bucket, "fs1")                  # s3+http://127.0.0.1:PORT/bucket/fs1
        ... ceph.access_key, ceph.secret_key ...
        ceph.stop_rgw(); ceph.start_rgw()              # the gateway down and back; data kept

It offers the same bucket tools as `tests.seaweed.WeedServer` (`make_bucket`, `objects`,
`put_object`, ...), so a test written for one runs on the other.

- The daemons come from Debian's packages ceph-mon, ceph-osd, radosgw and ceph-common
  (scripts/install.sh --dev installs them). When one is missing, `start` says so and which
  packages to install: tests that need Ceph fail, they are not skipped.
- The cluster: one mon (msgr2 only, on a free 127.0.0.1 port), one OSD whose store is in
  memory (memstore), no mgr, pools of size 1 with few PGs, and radosgw with the beast
  frontend on another free 127.0.0.1 port. Everything it writes is under its directory:
  ceph.conf, the mon's store, the OSD's directory, logs (log/), admin sockets and pid files
  (run/), crash reports. It starts in about 3 s here.
- `auth ... required = none`: no keyrings. With no authentication, every messenger mode
  must be `crc`, or radosgw retries its mon session on EACCES for ever.
- Without a mgr some `ceph` commands never answer, so every CLI call runs with a
  deadline (`run`); readiness is asked of the mon's admin socket (quorum), of the mon
  (`osd dump`: the OSD is up) and of S3 itself (radosgw answers).
- `paxos propose interval = 0.1` (default 1 s) makes each change of the cluster maps,
  such as a pool creation, commit at once; the rgw pools are created before radosgw starts
  (all in one `ceph` process), with 1-8 PGs each.
- One S3 user is made with `radosgw-admin user create`; its keys are read from the
  command's JSON answer (they never go on a command line) and are never printed.
- `stop()` ends radosgw, the OSD and the mon: SIGTERM, then SIGKILL after a grace, each
  wait bounded. A start that fails stops what it had started and raises `CephError` with
  the tail of the log of the daemon that failed. Daemons get SIGTERM when the test process
  dies (PR_SET_PDEATHSIG). The memstore OSD keeps objects in memory: a stopped cluster is
  not started again (make a new one); radosgw alone may be stopped and started at will.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import io
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from tests.seaweed import HOST, _die_with_parent, free_ports

START_TIMEOUT = 60.0
CLI_TIMEOUT = 20.0  # one `ceph`/`radosgw-admin` call; a command that needs a mgr never ends
STOP_GRACE = 5.0  # each daemon ends within ~0.2 s of SIGTERM here
PACKAGES = "ceph-mon ceph-osd radosgw ceph-common"
BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph", "monmaptool")
DAEMONS = ("rgw", "osd", "mon")  # the order in which they are stopped
USER = "repfs-test"
PORT_TRIES = 3

# The pools radosgw's default zone uses, with their PG counts: created up front, few PGs.
RGW_POOLS = {
    ".rgw.root": 1,
    "default.rgw.control": 1,
    "default.rgw.meta": 1,
    "default.rgw.log": 1,
    "default.rgw.buckets.index": 4,
    "default.rgw.buckets.non-ec": 1,
    "default.rgw.buckets.data": 8,
}


class CephError(RuntimeError):
    """The cluster could not be made, started or asked something; the message says why."""


class PortTaken(CephError):
    """A daemon could not bind its port: another process took it after `free_ports`."""


def ceph_binaries() -> dict[str, str]:
    """Name → path of every Ceph program the cluster needs (CephError if any is missing)."""
    found = {name: shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin") for name in BINARIES}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise CephError(
            f"Ceph is not installed (missing: {', '.join(missing)}): "
            f"apt-get install {PACKAGES} (scripts/install.sh --dev installs them)"
        )
    return {name: path for name, path in found.items() if path is not None}


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"--- {path}: (none)"
    kept = [line for line in text.splitlines() if "log_channel(audit)" not in line]  # our own polling
    return f"--- {path} (last {lines} lines):\n" + "\n".join(kept[-lines:])


class CephCluster:
    """A single-node Ceph cluster (mon, memstore OSD, radosgw) on free loopback ports."""

    tls = False  # radosgw here serves plain HTTP

    def __init__(self, directory: Path, *, memstore_mb: int = 2048) -> None:
        self.dir = Path(directory)
        self.memstore_mb = memstore_mb
        self.fsid = str(uuid.uuid4())
        self.ports = dict(zip(("mon", "rgw"), free_ports(2), strict=True))
        self.conf = self.dir / "ceph.conf"
        self.logs = self.dir / "log"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.timings: dict[str, float] = {}  # seconds each step of `start` took
        self.buckets: set[str] = set()
        self._keys: tuple[str, str] | None = None
        self._made = False
        self._bin: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"CephCluster({self.endpoint}, {self.dir})"

    def __enter__(self) -> CephCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- addresses and credentials --------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.ports['rgw']}"

    def url(self, bucket: str, prefix: str = "") -> str:
        """The repfs pool URL of `bucket` (and `prefix`) on this cluster's radosgw."""
        return f"s3+http://{self.endpoint}/{bucket}" + (f"/{prefix}" if prefix else "")

    @property
    def access_key(self) -> str:
        return self._user_keys()[0]

    @property
    def secret_key(self) -> str:
        return self._user_keys()[1]

    def _user_keys(self) -> tuple[str, str]:
        if self._keys is None:
            raise CephError(f"{self} has no S3 user yet: start it first")
        return self._keys

    # --- configuration --------------------------------------------------------------------
    def _write_conf(self) -> None:
        d = self.dir
        mon = self.ports["mon"]
        self.conf.write_text(
            f"""\
[global]
fsid = {self.fsid}
mon host = v2:{HOST}:{mon}
mon initial members = a
public addr = {HOST}
cluster addr = {HOST}
ms bind ipv6 = false
ms bind msgr1 = false
# one bind attempt: a port taken meanwhile fails at once ("Address already in use") and
# `start` tries again on new ports; 0 would mean no attempt at all
ms bind retry count = 1
# no cephx, so no keyrings; then every messenger mode must be crc, or clients get EACCES
auth cluster required = none
auth service required = none
auth client required = none
ms cluster mode = crc
ms service mode = crc
ms client mode = crc
ms mon cluster mode = crc
ms mon service mode = crc
ms mon client mode = crc
keyring = {d}/keyring
run dir = {d}/run
admin socket = {d}/run/$cluster-$name.asok
pid file = {d}/run/$name.pid
crash dir = {d}/crash
log file = {d}/log/$name.log
mon cluster log file = {d}/log/cluster.log
log to syslog = false
err to syslog = false
clog to syslog = false
log to stderr = false
err to stderr = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true

[mon]
mon data = {d}/mon/$name
# commit each map change at once (default 1 s): a start makes a dozen of them
paxos propose interval = 0.1
mon warn on pool no redundancy = false
debug rocksdb = 0/0

[mon.a]
public addrv = v2:{HOST}:{mon}

[osd]
osd data = {d}/osd/$name
osd objectstore = memstore
memstore device bytes = {self.memstore_mb << 20}
osd op num shards = 2
osd op num threads per shard = 2

[client.rgw]
rgw frontends = beast endpoint={HOST}:{self.ports["rgw"]}
rgw data = {d}/rgw/$name
rgw thread pool size = 64
"""
        )

    # --- running Ceph's programs ----------------------------------------------------------
    def run(self, program: str, *args: str, stdin: str = "", timeout: float = CLI_TIMEOUT) -> str:
        """One Ceph command-line call against this cluster, with a deadline; its stdout.

        Raises CephError with the command, its exit status and its stderr (never its stdout:
        `radosgw-admin user create` prints the secret key)."""
        cmd = [self._bin[program], "-c", str(self.conf)]
        if program == "ceph":
            cmd += ["--connect-timeout", f"{max(timeout - 2, 1):g}"]
        cmd += list(args)
        shown = " ".join([program, *args])
        try:
            res = subprocess.run(cmd, input=stdin.encode(), capture_output=True, timeout=timeout, cwd=self.dir)
        except subprocess.TimeoutExpired:
            raise CephError(f"`{shown}` did not finish within {timeout:g} s") from None
        if res.returncode != 0:
            err = res.stderr.decode(errors="replace").strip()[-2000:]
            raise CephError(f"`{shown}` failed with exit status {res.returncode}: {err or '(no stderr)'}")
        return res.stdout.decode(errors="replace")

    def _launch(self, name: str, *args: str) -> None:
        program = {"mon": "ceph-mon", "osd": "ceph-osd", "rgw": "radosgw"}[name]
        assert not self._alive(name), f"{self}: {name} is already running"
        with open(self.logs / f"{name}.out", "ab") as out:
            out.write(f"\n===== start at {time.strftime('%H:%M:%S')} =====\n".encode())
            out.flush()
            self.procs[name] = subprocess.Popen(
                [self._bin[program], "-c", str(self.conf), "-f", *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd=self.dir,
                env={**os.environ, "TMPDIR": str(self.dir)},
                preexec_fn=_die_with_parent,  # only prctl: safe between fork and exec
                start_new_session=True,
            )

    def _alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def log_tail(self, name: str, lines: int = 40) -> str:
        """The end of a daemon's log and of its stdout/stderr."""
        log = {"mon": "mon.a.log", "osd": "osd.0.log", "rgw": "client.rgw.log"}[name]
        return _tail(self.logs / log, lines) + "\n" + _tail(self.logs / f"{name}.out", 15)

    def _failed(self, name: str, what: str) -> CephError:
        proc = self.procs.get(name)
        status = proc.poll() if proc is not None else None
        state = "running" if status is None else f"exited with status {status}"
        tail = self.log_tail(name)
        # radosgw exits with EADDRINUSE, sometimes before its log says so; the mon only logs it
        taken = status == errno.EADDRINUSE or "Address already in use" in tail
        return (PortTaken if taken else CephError)(f"Ceph in {self.dir}: {what} ({name} {state})\n{tail}")

    def _wait(self, name: str, what: str, ready: Callable[[], bool], deadline: float) -> None:
        """Poll `ready()` until it is true; fail if daemon `name` dies or time runs out."""
        last = ""
        while True:
            if not self._alive(name):
                raise self._failed(name, f"{what}: the {name} daemon died{last}")
            try:
                if ready():
                    return
            except (CephError, OSError, ValueError) as exc:
                last = f" (last: {exc})"
            if time.monotonic() > deadline:
                raise self._failed(name, f"{what}: not done in time{last}")
            time.sleep(0.05)

    # --- life cycle -----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return all(self._alive(name) for name in DAEMONS)

    @property
    def rgw_running(self) -> bool:
        return self._alive("rgw")

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Make the cluster and start it: mon, OSD, pools, radosgw, S3 user."""
        assert not self._made, f"{self} was started before: make a new cluster (memstore keeps no data)"
        self._bin = ceph_binaries()
        self._made = True
        began = time.monotonic()
        deadline = began + timeout
        for attempt in range(PORT_TRIES):
            try:
                self._start(deadline)
            except PortTaken:  # another process took a port after `free_ports`
                self.stop()
                if attempt + 1 == PORT_TRIES:
                    raise
            except BaseException:
                self.stop()
                raise
            else:
                break
            # Again from nothing, on new ports.
            for path in self.dir.iterdir():  # the failed attempt's logs included
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            self.ports = dict(zip(("mon", "rgw"), free_ports(2), strict=True))
        self.timings["total"] = time.monotonic() - began

    def _step(self, name: str, since: float) -> float:
        now = time.monotonic()
        self.timings[name] = now - since
        return now

    def _start(self, deadline: float) -> None:
        t = time.monotonic()
        for sub in ("mon/mon.a", "osd/osd.0", "rgw", "log", "run", "crash"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self._write_conf()
        monmap = self.dir / "monmap"
        self._mkfs("monmaptool", "--create", "--fsid", self.fsid, "--addv", "a", f"v2:{HOST}:{self.ports['mon']}",
                        str(monmap))  # fmt: skip
        self._mkfs("ceph-mon", "--mkfs", "-i", "a", "--monmap", str(monmap))
        self._launch("mon", "-i", "a")
        self._wait("mon", "the mon did not form a quorum", self._mon_leads, deadline)
        osd_uuid = str(uuid.uuid4())
        try:
            osd_id = self.run("ceph", "osd", "new", osd_uuid).strip()
        except CephError as exc:
            raise self._failed("mon", f"the mon does not answer: {exc}") from None
        if osd_id != "0":
            raise self._failed("mon", f"`ceph osd new` answered {osd_id!r}, not OSD 0")
        t = self._step("mon", t)

        self._mkfs("ceph-osd", "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
        self._launch("osd", "-i", "0")
        self._make_pools()
        self._wait("osd", "the OSD did not come up", self._osd_up, deadline)
        t = self._step("osd", t)

        self.start_rgw(timeout=deadline - time.monotonic())
        t = self._step("rgw", t)
        self._make_user()
        self._step("user", t)

    def _mkfs(self, program: str, *args: str) -> None:
        """A Ceph program that makes a map or a store; on failure, say so with the daemon's log."""
        try:
            self.run(program, *args)
        except CephError as exc:
            name = {"ceph-osd": "osd"}.get(program, "mon")
            raise CephError(f"Ceph in {self.dir}: {exc}\n{self.log_tail(name)}") from None

    def _mon_leads(self) -> bool:
        """Asked through the mon's admin socket: another program on its port cannot answer."""
        asok = self.dir / "run" / "ceph-mon.a.asok"
        if not asok.exists():
            return False
        status = json.loads(self.run("ceph", "--admin-daemon", str(asok), "mon_status", timeout=5.0))
        return bool(status.get("state") == "leader")

    def _make_pools(self) -> None:
        """The rgw pools, in one `ceph` process reading its commands from stdin."""
        lines = []
        for pool, pgs in RGW_POOLS.items():
            lines += [f"osd pool create {pool} {pgs} {pgs}", f"osd pool application enable {pool} rgw"]
        lines.append("osd pool ls")
        try:
            out = self.run("ceph", stdin="\n".join(lines) + "\n")
        except CephError as exc:
            raise self._failed("mon", f"cannot create the rgw pools: {exc}") from None
        missing = set(RGW_POOLS) - set(out.split())
        if missing:
            raise self._failed("mon", f"the rgw pools {sorted(missing)} were not created")

    def _osd_up(self) -> bool:
        dump = json.loads(self.run("ceph", "osd", "dump", "--format", "json", timeout=5.0))
        return any(o.get("osd") == 0 and o.get("up") == 1 for o in dump.get("osds", []))

    def _make_user(self) -> None:
        try:
            out = self.run("radosgw-admin", "user", "create", f"--uid={USER}", "--display-name=repfs tests")
            keys = json.loads(out)["keys"][0]
            self._keys = (str(keys["access_key"]), str(keys["secret_key"]))
        except CephError as exc:
            raise self._failed("rgw", f"cannot make the S3 user: {exc}") from None
        except (ValueError, KeyError, IndexError, TypeError):
            raise self._failed("rgw", "`radosgw-admin user create` gave no S3 key") from None

    def start_rgw(self, timeout: float = START_TIMEOUT) -> None:
        """Start radosgw (again) on its port; ready when it answers an S3 request."""
        self._launch("rgw", "-n", "client.rgw")
        self._wait("rgw", "radosgw does not answer S3 requests", self._rgw_answers, time.monotonic() + timeout)

    def _rgw_answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.endpoint}/", timeout=2.0) as r:  # anonymous ListBuckets
                return bool(r.status == 200)
        except urllib.error.HTTPError:
            return False

    def stop_rgw(self, grace: float = STOP_GRACE) -> None:
        """Stop radosgw only: the S3 endpoint goes away, the cluster keeps its objects."""
        self._stop("rgw", grace)

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop every daemon: radosgw, then the OSD, then the mon."""
        for name in DAEMONS:
            self._stop(name, grace)

    def _stop(self, name: str, grace: float) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)

    # --- behind repfs's back ----------------------------------------------------------------
    def client(self, *, timeout: float = 10.0) -> Minio:
        """A plain minio client with the S3 user's keys."""
        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=False)
        return Minio(
            self.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=False, region="us-east-1",
            http_client=http,
        )  # fmt: skip

    def make_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh random name if none is given); return its name."""
        name = name or f"t-{secrets.token_hex(6)}"
        self.client().make_bucket(name)
        self.buckets.add(name)
        return name

    def drop_buckets(self, timeout: float = 10.0) -> None:
        """Delete the buckets `make_bucket` made, objects and all."""
        if not self.rgw_running:
            return
        client = self.client()
        deadline = time.monotonic() + timeout
        for name in sorted(self.buckets):
            # One that cannot be deleted is left behind: later tests make buckets of other names.
            with contextlib.suppress(S3Error, urllib3.exceptions.HTTPError, OSError):
                self._drop(client, name, deadline)
        self.buckets.clear()

    @staticmethod
    def _drop(client: Minio, name: str, deadline: float) -> None:
        """Empty a bucket and delete it (RGW keeps a bucket that is not empty), again while
        a PUT that a test abandoned is still landing in it."""
        while True:
            doomed = (DeleteObject(o.object_name) for o in client.list_objects(name, recursive=True))
            for error in client.remove_objects(name, doomed):
                raise OSError(f"cannot delete {error.name} from bucket {name}: {error.code}")
            try:
                client.remove_bucket(name)
                return
            except S3Error as exc:
                if exc.code != "BucketNotEmpty" or time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def bucket_exists(self, name: str) -> bool:
        return bool(self.client().bucket_exists(name))

    def put_object(self, bucket: str, name: str, data: bytes) -> None:
        """Write (or overwrite) an object directly, e.g. to corrupt a replica."""
        self.client().put_object(bucket, name, io.BytesIO(data), len(data))

    def get_object(self, bucket: str, name: str) -> bytes:
        response = self.client().get_object(bucket, name)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def remove_object(self, bucket: str, name: str) -> None:
        self.client().remove_object(bucket, name)

    def objects(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """Object name → size of everything in a bucket under `prefix`."""
        return {
            o.object_name: o.size or 0
            for o in self.client().list_objects(bucket, prefix=prefix or None, recursive=True)
            if not o.is_dir
        }


# --- one cluster shared by a whole test session ---------------------------------------------

_shared: dict[str, CephCluster | CephError] = {}
_shared_lock = threading.Lock()


def shared_cluster(base: Path) -> CephCluster:
    """A cluster started once per process and stopped when it exits; tests share it (each
    uses its own buckets). A test that stops radosgw must start it again. A start that
    failed is not tried again: every test that asks gets the same error."""
    with _shared_lock:
        if "ceph" not in _shared:
            cluster = CephCluster(base / "ceph-shared")
            try:
                cluster.start()
            except CephError as exc:
                _shared["ceph"] = exc
                raise
            _shared["ceph"] = cluster
            atexit.register(cluster.stop, 2.0)
        found = _shared["ceph"]
        if isinstance(found, CephError):
            raise CephError(f"the shared Ceph cluster did not start (see the first test that asked): {found}")
        if not found.rgw_running:
            found.start_rgw()  # a test that stopped it failed before it could start it again
        return found
