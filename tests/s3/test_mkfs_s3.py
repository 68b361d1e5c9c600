"""`repfs mkfs` with S3 pools, through the CLI as an operator runs it: credentials from
the environment, a credentials file or a pools file; buckets; TLS; clear refusals."""

from __future__ import annotations

import stat
import subprocess
import tomllib
from pathlib import Path

from repfs.backend.keys import SUPERBLOCK_KEY
from tests.helpers import make_key
from tests.s3.rig import clean_env, repfs_cli, s3_env, write_credentials
from tests.seaweed import WeedServer


def mkfs_args(tmp_path: Path, *pools: str) -> list[str]:
    args = ["mkfs", str(tmp_path / "fs"), "--key-file", str(make_key(tmp_path / "key")), "--block-size", "64K"]
    for p in pools:
        args += ["--pool", p]
    return args


def assert_clean_failure(res: subprocess.CompletedProcess[str], code: int, *secrets: str) -> str:
    """A refusal: the exit code, one message on stderr, no traceback, no secret."""
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    err = res.stderr
    assert err.startswith("repfs: error: "), err
    assert "Traceback" not in err
    for s in secrets:
        assert s not in err and s not in res.stdout
    return err


def test_mkfs_with_credentials_from_the_environment(tmp_path: Path, weeds: list[WeedServer]) -> None:
    buckets = [s.make_bucket() for s in weeds]
    urls = [f"s3p{i}={s.url(b, 'fs1')}" for i, (s, b) in enumerate(zip(weeds, buckets, strict=True))]
    res = repfs_cli(*mkfs_args(tmp_path, *urls), env=s3_env(weeds[0]))
    assert res.returncode == 0, res.stderr
    assert "take their S3 credentials from the environment (REPFS_S3_ACCESS_KEY" in res.stdout
    config_file = tmp_path / "fs" / "repfs.toml"
    text = config_file.read_text()
    assert weeds[0].secret_key not in text and weeds[0].access_key not in text
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    config = tomllib.loads(text)
    assert [p["url"] for p in config["pools"]] == [s.url(b, "fs1") for s, b in zip(weeds, buckets, strict=True)]
    for s, b in zip(weeds, buckets, strict=True):
        assert list(s.objects(b)) == [f"fs1/{SUPERBLOCK_KEY}"]


def test_mkfs_with_aws_variables(tmp_path: Path, weeds: list[WeedServer]) -> None:
    server = weeds[1]
    env = clean_env(AWS_ACCESS_KEY_ID=server.access_key, AWS_SECRET_ACCESS_KEY=server.secret_key)
    res = repfs_cli(*mkfs_args(tmp_path, server.url(server.make_bucket())), "--replicas", "1", env=env)
    assert res.returncode == 0, res.stderr
    assert "AWS_ACCESS_KEY_ID" in res.stdout


def test_mkfs_without_credentials_says_where_to_put_them(tmp_path: Path, weeds: list[WeedServer]) -> None:
    server = weeds[0]
    res = repfs_cli(*mkfs_args(tmp_path, f"s3a={server.url(server.make_bucket())}"), env=clean_env())
    err = assert_clean_failure(res, 2)
    assert "pool s3a has no S3 credentials" in err and "REPFS_S3_ACCESS_KEY" in err
    assert not (tmp_path / "fs").exists()


def test_credentials_file_must_be_private(tmp_path: Path, weeds: list[WeedServer]) -> None:
    server = weeds[0]
    creds = write_credentials(tmp_path / "creds.toml", server, mode=0o644)
    args = [*mkfs_args(tmp_path, server.url(server.make_bucket())), "--credentials-file", str(creds)]
    err = assert_clean_failure(repfs_cli(*args, env=clean_env()), 2, server.secret_key)
    assert f"credentials file {creds} holds secrets but is mode 0644; run: chmod 600 {creds}" in err
    creds.chmod(0o600)
    res = repfs_cli(*args, env=clean_env())
    assert res.returncode == 0, res.stderr
    assert "note:" not in res.stdout  # mount finds the file through repfs.toml
    config = tomllib.loads((tmp_path / "fs" / "repfs.toml").read_text())
    assert config["pools"][0]["credentials_file"] == str(creds)


def test_wrong_credentials_name_the_pool_without_secret_or_traceback(tmp_path: Path, weeds: list[WeedServer]) -> None:
    server = weeds[2]
    wrong = "This-Is-Not-The-Secret-0123456789"
    args = mkfs_args(tmp_path, f"s3bad={server.url(server.make_bucket())}")
    err = assert_clean_failure(repfs_cli(*args, env=s3_env(server, secret=wrong)), 1, wrong, server.secret_key)
    assert f"pool s3bad: credentials rejected by http://{server.endpoint}" in err
    assert "environment (REPFS_S3_ACCESS_KEY, REPFS_S3_SECRET_KEY)" in err
    assert not (tmp_path / "fs").exists()


def test_missing_bucket_is_refused_unless_asked_to_create(tmp_path: Path, weeds: list[WeedServer]) -> None:
    server = weeds[0]
    bucket = f"new-{tmp_path.name[-12:].lower().replace('_', '-')}"
    args = mkfs_args(tmp_path, f"s3new={server.url(bucket, 'x')}")
    err = assert_clean_failure(repfs_cli(*args, env=s3_env(server)), 2)
    where = f"pool s3new (http://{server.endpoint})"
    assert f"bucket {bucket} does not exist on {where}; create it or pass --create-buckets" in err
    assert not server.bucket_exists(bucket)
    res = repfs_cli(*args, "--replicas", "1", "--create-buckets", env=s3_env(server))
    assert res.returncode == 0, res.stderr
    assert server.bucket_exists(bucket)
    assert list(server.objects(bucket)) == [f"x/{SUPERBLOCK_KEY}"]


def test_pools_file_with_secrets_must_be_private(tmp_path: Path, weeds: list[WeedServer]) -> None:
    pools_file = tmp_path / "pools.toml"
    lines = ["replicas = 2", ""]
    for i, s in enumerate(weeds[:2]):
        lines += [
            "[[pools]]",
            f'name = "inline{i}"',
            f'url = "{s.url(s.make_bucket(), "p")}"',
            f'access_key = "{s.access_key}"',
            f'secret_key = "{s.secret_key}"',
            'capacity = "1G"',
            "",
        ]
    pools_file.write_text("\n".join(lines))
    pools_file.chmod(0o640)
    key = make_key(tmp_path / "key")
    args = ["mkfs", str(tmp_path / "fs"), "--key-file", str(key), "--pools-file", str(pools_file)]
    err = assert_clean_failure(repfs_cli(*args, env=clean_env()), 2, weeds[0].secret_key)
    assert "holds secrets but is mode 0640; run: chmod 600" in err
    pools_file.chmod(0o600)
    res = repfs_cli(*args, env=clean_env())
    assert res.returncode == 0, res.stderr
    written = tmp_path / "fs" / "repfs.toml"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    config = tomllib.loads(written.read_text())
    assert config["pools"][0]["secret_key"] == weeds[0].secret_key
    assert config["pools"][0]["capacity"] == 1 << 30


def test_secrets_on_the_command_line_are_refused(tmp_path: Path, weeds: list[WeedServer]) -> None:
    server = weeds[0]
    url = f"s3+http://{server.access_key}:{server.secret_key}@{server.endpoint}/bucket"
    err = assert_clean_failure(repfs_cli(*mkfs_args(tmp_path, url), env=clean_env()), 2, server.secret_key)
    assert "credentials do not belong in the URL" in err


def test_tls_untrusted_by_default_and_accepted_with_its_ca(tmp_path: Path, tls_weed: WeedServer) -> None:
    url = tls_weed.url(tls_weed.make_bucket(), "fs")
    assert url.startswith("s3://")
    args = [*mkfs_args(tmp_path, f"secure={url}"), "--replicas", "1"]
    err = assert_clean_failure(repfs_cli(*args, env=s3_env(tls_weed)), 1, tls_weed.secret_key)
    assert f"pool secure: the TLS certificate of https://{tls_weed.endpoint} is not trusted" in err
    assert "--ca-bundle" in err
    res = repfs_cli(*args, "--ca-bundle", str(tls_weed.ca_file), env=s3_env(tls_weed))
    assert res.returncode == 0, res.stderr
    config = tomllib.loads((tmp_path / "fs" / "repfs.toml").read_text())
    assert config["pools"][0]["ca_bundle"] == str(tls_weed.ca_file)


def test_plain_http_is_only_what_the_url_asks_for(tmp_path: Path, tls_weed: WeedServer) -> None:
    # s3+http:// to a server that speaks only HTTPS fails; repfs never downgrades by itself.
    url = f"s3+http://{tls_weed.endpoint}/{tls_weed.make_bucket()}"
    res = repfs_cli(*mkfs_args(tmp_path, url), "--replicas", "1", env=s3_env(tls_weed))
    err = assert_clean_failure(res, 1, tls_weed.secret_key)
    assert f"http://{tls_weed.endpoint}" in err
