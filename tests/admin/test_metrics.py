"""The metrics endpoint of a real mount, scraped over real HTTP and HTTPS: negative FUSE
answers kept out of the error counter, series of a removed pool gone, process metrics,
OpenMetrics and gzip negotiation, the renamed block gauge, the time of the last scrub, and
`--metrics-web-config` (TLS with a certificate made here, basic auth with bcrypt and argon2
hashes, bad files refused with one line, no password in a log)."""

from __future__ import annotations

import base64
import datetime
import errno
import gzip
import http.client
import ipaddress
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

import argon2
import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families

from repfs.admin.metrics import STANDARD
from tests.admin.rig import admin_json, free_port, sample, scrape
from tests.helpers import Repfs, is_mounted, run_repfs, wait_for

pytestmark = pytest.mark.timeout(240)

Samples = dict[str, list[tuple[dict[str, str], float]]]

# prometheus_client's OpenMetrics parser has no annotations; this is its documented type.
openmetrics_families: Callable[[str], Iterable[Metric]] = openmetrics_parser.text_string_to_metric_families


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


def get(
    url: str, *, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of one GET; HTTP errors are answers too."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def self_signed(cert: Path, key: Path, name: str = "repfs-test") -> bytes:
    """A certificate for 127.0.0.1 signed by its own key (PEM files); returns its DER."""
    private = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    pem = serialization.Encoding.PEM
    key.write_bytes(private.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key.chmod(0o600)
    return certificate.public_bytes(serialization.Encoding.DER)


def trusting(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def peer_certificate(port: int, ctx: ssl.SSLContext) -> bytes:
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=ctx)
    try:
        conn.connect()
        assert conn.sock is not None
        der = conn.sock.getpeercert(binary_form=True)  # type: ignore[attr-defined]
        assert der is not None
        return bytes(der)
    finally:
        conn.close()


# --- what the scrape says -------------------------------------------------------------


def test_negative_answers_are_not_errors_and_the_scrape_speaks_openmetrics_and_gzip(
    repfs_factory: Callable[..., Repfs], sockdir: Path
) -> None:
    fs = repfs_factory()
    sock, port = sockdir / "s", free_port()
    fs.mount("--admin-socket", str(sock), "--metrics", f"127.0.0.1:{port}")
    (fs.mnt / "d").mkdir()
    for i in range(5):  # two blocks each
        with open(fs.mnt / "d" / f"f{i}", "wb") as f:
            f.write(os.urandom(100_000))
            os.fsync(f.fileno())
    (fs.mnt / "d" / "sub").mkdir()
    (fs.mnt / "d" / "sub" / "x").write_bytes(b"x")
    # what ls -l, a shell and cp -a ask for: absent names and attributes
    res = subprocess.run(["ls", "-laR", str(fs.mnt)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert not (fs.mnt / "d" / "no-such-file").exists()
    f0 = fs.mnt / "d" / "f0"
    with pytest.raises(OSError) as absent:
        os.getxattr(f0, "user.nothing")
    assert absent.value.errno == errno.ENODATA
    with pytest.raises(OSError) as foreign:
        os.getxattr(f0, "system.repfs_probe")
    assert foreign.value.errno == errno.EOPNOTSUPP
    with pytest.raises(OSError) as unremoved:
        os.removexattr(f0, "user.nothing")
    assert unremoved.value.errno == errno.ENODATA
    # and real errors, which must still count
    with pytest.raises(OSError) as refused:
        os.setxattr(f0, "system.repfs_probe", b"1")
    assert refused.value.errno == errno.EOPNOTSUPP
    with pytest.raises(OSError) as full:
        os.rmdir(fs.mnt / "d" / "sub")
    assert full.value.errno == errno.ENOTEMPTY

    m = scrape(port)
    errors = {(labels["op"], labels["errno"]): v for labels, v in m.get("repfs_fuse_op_errors_total", [])}
    negative = {(labels["op"], labels["errno"]): v for labels, v in m["repfs_fuse_op_negative_answers_total"]}
    assert not [k for k in errors if k[1] == "ENODATA" or k[0] == "lookup"], errors
    assert ("getxattr", "ENOTSUP") not in errors and ("removexattr", "ENODATA") not in errors, errors
    assert negative.get(("getxattr", "ENODATA"), 0) >= 2, negative  # ls -l's ACL lookups and ours
    assert negative.get(("getxattr", "ENOTSUP")) == 1 and negative.get(("removexattr", "ENODATA")) == 1, negative
    assert errors.get(("setxattr", "ENOTSUP")) == 1 and errors.get(("rmdir", "ENOTEMPTY")) == 1, errors

    # the standard process metrics, of the daemon's own process
    pid = admin_json(sock, "status")["pid"]
    assert fs.proc is not None and pid == fs.proc.pid
    for name in STANDARD:
        assert name in m, f"{name} not served"
    assert sample(m, "process_resident_memory_bytes") > 10 << 20  # type: ignore[operator]
    assert sample(m, "process_open_fds") >= 5  # type: ignore[operator]
    assert sample(m, "process_cpu_seconds_total") > 0  # type: ignore[operator]
    started = os.stat(f"/proc/{pid}").st_mtime
    assert abs(sample(m, "process_start_time_seconds") - started) < 5  # type: ignore[operator]

    # the block gauge under its new name, and the old one gone
    assert "repfs_stored_blocks" not in m
    assert sample(m, "repfs_block_records") >= 10  # type: ignore[operator]

    # content negotiation: OpenMetrics when asked for, gzip when accepted
    url = f"http://127.0.0.1:{port}/metrics"
    status, headers, body = get(url)
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "content-encoding" not in headers and b"repfs_info{" in body
    status, headers, body = get(url, headers={"Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8"})
    assert status == 200 and headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n")
    families = {f.name: f for f in openmetrics_families(body.decode())}
    assert families["repfs_fuse_op_errors"].type == "counter" and "process_cpu_seconds" in families
    status, headers, body = get(url, headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("content-encoding") == "gzip"
    assert sample(parse(gzip.decompress(body).decode()), "repfs_block_records") is not None
    status, headers, body = get(url, headers={"Accept": "application/openmetrics-text", "Accept-Encoding": "gzip"})
    assert headers.get("content-encoding") == "gzip" and gzip.decompress(body).endswith(b"# EOF\n")

    # the last scrub: the filesystem's making until one has run, then that scrub's end
    made = sample(m, "repfs_scrub_last_finished_timestamp_seconds")
    assert made is not None and time.time() - 600 < made <= time.time()
    before = time.time()
    assert admin_json(sock, "scrub", "--restart")["report"]["unrecoverable"] == 0
    online = sample(scrape(port), "repfs_scrub_last_finished_timestamp_seconds")
    assert online is not None and before <= online <= time.time()
    # `repfs scrub` of the unmounted filesystem counts too, and the time outlives the daemon
    fs.unmount()
    res = run_repfs("scrub", str(fs.fs_dir), "--key-file", str(fs.key), timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    fs.mount("--admin-socket", str(sock), "--metrics", f"127.0.0.1:{port}")
    offline = sample(scrape(port), "repfs_scrub_last_finished_timestamp_seconds")
    assert offline is not None and online < offline <= time.time()


def test_the_series_of_a_removed_pool_leave_the_scrape(repfs_factory: Callable[..., Repfs], sockdir: Path) -> None:
    fs = repfs_factory()
    sock, port = sockdir / "s", free_port()
    fs.mount("--admin-socket", str(sock), "--metrics", f"127.0.0.1:{port}", "--usage-interval", "0.5")
    for i in range(8):
        with open(fs.mnt / f"f{i}", "wb") as f:
            f.write(os.urandom(150_000))
            os.fsync(f.fileno())

    def pool3_series(m: Samples) -> list[str]:
        return sorted({name for name, rows in m.items() for labels, _ in rows if labels.get("pool") == "pool3"})

    held = pool3_series(scrape(port))
    assert {"repfs_pool_request_seconds_count", "repfs_pool_state", "repfs_pool_weight"} <= set(held), held
    assert admin_json(sock, "pools", "drain", "pool3", "--wait", "--timeout", "120")["drain"]["done"]
    assert "repfs_drain_done" in pool3_series(scrape(port))
    answer = admin_json(sock, "pools", "remove", "pool3")
    assert answer["pool"] == "pool3"
    fs.expect_log(r"pool pool3 removed")
    m = scrape(port)
    assert pool3_series(m) == [], pool3_series(m)
    assert sample(m, "repfs_pool_request_seconds_count", pool="pool1") and sample(m, "repfs_pool_state", pool="pool2")
    # and they stay gone while the daemon goes on working
    (fs.mnt / "after").write_bytes(os.urandom(200_000))
    os.sync()
    assert wait_for(lambda: sample(scrape(port), "repfs_upload_queue_blocks") == 0, 30)
    assert pool3_series(scrape(port)) == []


# --- TLS and basic auth ------------------------------------------------------------------


def test_tls_and_basic_auth_from_a_web_config(
    repfs_factory: Callable[..., Repfs], sockdir: Path, tmp_path: Path
) -> None:
    fs = repfs_factory()
    conf = tmp_path / "web"
    conf.mkdir()
    der = self_signed(conf / "metrics.crt", conf / "metrics.key")
    password = "pw-" + os.urandom(12).hex()
    other = "argon-" + os.urandom(12).hex()
    bcrypt_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode().replace("$2b$", "$2y$", 1)
    argon_hash = argon2.PasswordHasher().hash(other)
    web = conf / "web-config.yml"
    web.write_text(
        "tls_server_config:\n  cert_file: metrics.crt\n  key_file: metrics.key\n"
        f"basic_auth_users:\n  prometheus: '{bcrypt_hash}'\n  grafana: '{argon_hash}'\n"
    )
    port = free_port()
    fs.mount("--admin-socket", str(sockdir / "s"), "--metrics", f"127.0.0.1:{port}", "--metrics-web-config", str(web))
    url = f"https://127.0.0.1:{port}/metrics"
    ctx = trusting(conf / "metrics.crt")
    # the daemon presents the certificate made here
    assert peer_certificate(port, ctx) == der
    # no credentials, wrong ones, an unknown user, a malformed header: 401, and it says how to authenticate
    for headers in ({}, basic("prometheus", "wrong"), basic("nobody", password), basic("grafana", password),
                    {"Authorization": "Basic !!!"}, {"Authorization": f"Bearer {password}"}):  # fmt: skip
        status, answer, _ = get(url, headers=headers, context=ctx)
        assert status == 401, (headers, status)
        assert answer["www-authenticate"].startswith('Basic realm="repfs metrics"')
    # the right ones: 200 and the metrics (bcrypt's $2y$ hashes, as htpasswd makes them, and argon2)
    for _ in range(3):  # the second and third are answered from the remembered digest
        status, _, body = get(url, headers=basic("prometheus", password), context=ctx)
        assert status == 200 and sample(parse(body.decode()), "repfs_info") == 1
    status, _, body = get(url, headers={**basic("grafana", other), "Accept-Encoding": "gzip"}, context=ctx)
    assert status == 200 and b"repfs_pool_state" in gzip.decompress(body)
    # plain HTTP to the TLS port gets no answer
    with pytest.raises((http.client.HTTPException, OSError)):
        get(f"http://127.0.0.1:{port}/metrics", headers=basic("prometheus", password))
    # a client that does not trust the certificate refuses it
    with pytest.raises(urllib.error.URLError) as untrusted:
        get(url, headers=basic("prometheus", password), context=ssl.create_default_context())
    assert isinstance(untrusted.value.reason, ssl.SSLCertVerificationError)
    # after all that the daemon still serves
    assert get(url, headers=basic("prometheus", password), context=ctx)[0] == 200

    # a renewed certificate is taken at the next connection, no remount
    renewed = self_signed(conf / "new.crt", conf / "new.key", name="renewed")
    os.replace(conf / "new.key", conf / "metrics.key")
    os.replace(conf / "new.crt", conf / "metrics.crt")
    assert peer_certificate(port, trusting(conf / "metrics.crt")) == renewed
    # a broken one is not: the last good certificate stays, with a warning
    (conf / "metrics.crt").write_text("not a certificate\n")
    fs.expect_log(r"keeping the old certificate")
    assert peer_certificate(port, ctx_for(renewed)) == renewed
    assert wait_for(lambda: "keeping the old certificate" in fs.log_text(), 10)
    log = fs.log_text()
    assert "metrics at https://127.0.0.1:" in log
    assert password not in log and other not in log and bcrypt_hash not in log and argon_hash not in log


def ctx_for(der: bytes) -> ssl.SSLContext:
    """A client context that trusts exactly the certificate `der`."""
    return ssl.create_default_context(cadata=ssl.DER_cert_to_PEM_cert(der))


def test_a_bad_web_config_stops_the_mount_with_one_line(repfs_factory: Callable[..., Repfs], tmp_path: Path) -> None:
    fs = repfs_factory()
    conf = tmp_path / "web"
    conf.mkdir()
    self_signed(conf / "ok.crt", conf / "ok.key")
    self_signed(conf / "other.crt", conf / "other.key")
    secret = "plain-" + os.urandom(8).hex()
    good_hash = bcrypt.hashpw(b"x", bcrypt.gensalt(rounds=4)).decode()
    cases = {
        "missing.yml": (None, "cannot read it: No such file or directory"),
        "syntax.yml": ("tls_server_config: [cert_file\n", "not valid YAML"),
        "typo.yml": ("tls_server_config:\n  cert_fle: ok.crt\n  key_file: ok.key\n",
                     "unknown key(s) tls_server_config.cert_fle"),
        "top.yml": ("http_server_config:\n  http2: true\n", "unknown key(s) http_server_config"),
        "plain.yml": (f"basic_auth_users:\n  prometheus: {secret}\n",
                      "basic_auth_users.prometheus is not a bcrypt or argon2 password hash"),
        "nocert.yml": ("tls_server_config:\n  cert_file: gone.crt\n  key_file: ok.key\n",
                       f"cannot read {conf / 'gone.crt'}: No such file or directory"),
        "mismatch.yml": ("tls_server_config:\n  cert_file: ok.crt\n  key_file: other.key\n",
                         "are not a PEM certificate and its key"),
        "version.yml": ("tls_server_config:\n  cert_file: ok.crt\n  key_file: ok.key\n  min_version: TLS10\n",
                        "min_version must be TLS12 or TLS13"),
        "clientauth.yml": ("tls_server_config:\n  cert_file: ok.crt\n  key_file: ok.key\n"
                           "  client_auth_type: RequireAndVerifyClientCert\n", "needs client_ca_file"),
        "bad.toml": (f'[basic_auth_users]\nprometheus = "{good_hash}"\nx = 1\n',
                     "basic_auth_users.x is not a bcrypt or argon2 password hash"),
    }  # fmt: skip
    port = free_port()
    for name, (text, message) in cases.items():
        path = conf / name
        if text is not None:
            path.write_text(text)
        res = run_repfs("mount", "--foreground", "--key-file", str(fs.key), "--metrics", f"127.0.0.1:{port}",
                        "--metrics-web-config", str(path), str(fs.fs_dir), str(fs.mnt), timeout=60)  # fmt: skip
        assert res.returncode == 2, (name, res.returncode, res.stderr)
        lines = res.stderr.strip().splitlines()
        head = f"repfs: error: metrics web config {path}: "
        assert len(lines) == 1 and lines[0].startswith(head) and message in lines[0], (name, res.stderr)
        assert secret not in res.stderr and good_hash not in res.stderr
        assert not is_mounted(fs.mnt)
    res = run_repfs("mount", "--foreground", "--key-file", str(fs.key), "--metrics-web-config",
                    str(conf / "typo.yml"), str(fs.fs_dir), str(fs.mnt), timeout=60)  # fmt: skip
    assert res.returncode == 2 and res.stderr.strip() == "repfs: error: --metrics-web-config needs --metrics ADDR:PORT"
    # a good TOML file mounts, with basic auth and no TLS
    good = conf / "good.toml"
    good.write_text(f'[basic_auth_users]\nprometheus = "{good_hash}"\n')
    fs.mount("--metrics", f"127.0.0.1:{port}", "--metrics-web-config", str(good))
    assert get(f"http://127.0.0.1:{port}/metrics")[0] == 401
    assert get(f"http://127.0.0.1:{port}/metrics", headers=basic("prometheus", "x"))[0] == 200
