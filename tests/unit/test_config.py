"""repfs.toml parsing and validation, S3 pool URLs, and where S3 credentials come from."""

from __future__ import annotations

from pathlib import Path

import pytest

from repfs.backend.credentials import Credentials, read_credentials_file, resolve
from repfs.config import (
    FsConfig,
    PoolSpec,
    S3Location,
    format_age,
    load_config,
    parse_age,
    parse_config,
    parse_size,
    pool_from_url,
    read_config_file,
    redact_url,
)
from repfs.errors import ConfigError

# One pool each: replicas and write quorum default to 2 and 1, so one-pool configs say replicas = 1.
FILE_POOL = 'replicas = 1\n[[pools]]\nurl = "file:///srv/p1"\n'
S3_POOL = 'replicas = 1\n[[pools]]\nname = "s3a"\nurl = "s3://s3.example.com:9000/bucket/pre"\n'


# --- type errors name the key -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (FILE_POOL + 'weight = "heavy"\n', "pools[0].weight must be a number, got 'heavy'"),
        (FILE_POOL + "weight = true\n", "pools[0].weight must be a number, got True"),
        (FILE_POOL + "name = 5\n", "pools[0].name must be a string, got 5"),
        (FILE_POOL + 'capacity = "lots"\n', "pools[0].capacity must be a size in bytes or like '500G', got 'lots'"),
        (FILE_POOL + "capacity = 1.5\n", "pools[0].capacity must be an integer, got 1.5"),
        (FILE_POOL + "capacity = -1\n", "pools[0].capacity must be >= 0, got -1"),
        (S3_POOL + 'path_style = "yes"\n', "pools[0].path_style must be true or false, got 'yes'"),
        (S3_POOL + 'connections = "many"\n', "pools[0].connections must be an integer, got 'many'"),
        (S3_POOL + 'read_timeout = "1m"\n', "pools[0].read_timeout must be a number, got '1m'"),
        ('replicas = "two"\n[[pools]]\nurl = "file:///p"\n', "replicas must be an integer, got 'two'"),
        ('replicas = 1.0\n[[pools]]\nurl = "file:///p"\n', "replicas must be an integer, got 1.0"),
        ("write_quorum = false\n" + FILE_POOL, "write_quorum must be an integer, got False"),
        ('block_size = "4M"\n' + FILE_POOL, "block_size must be an integer, got '4M'"),
        ('pools = "p1"\n', "pools must be an array of tables"),
        ("[pools]\nurl = 'file:///x'\n", "pools must be an array of tables"),
    ],
)
def test_a_value_of_the_wrong_type_names_its_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="repfs.toml")
    assert str(info.value).startswith(f"repfs.toml: {message}")


def test_a_secret_of_the_wrong_type_is_not_echoed() -> None:
    with pytest.raises(ConfigError, match=r"pools\[0\].secret_key must be a string$"):
        parse_config(S3_POOL + 'access_key = "a"\nsecret_key = 123456789\n')


def test_unknown_keys_are_typos() -> None:
    with pytest.raises(ConfigError, match=r"pools\[0\]: unknown key\(s\) \['buckett'\]"):
        parse_config(S3_POOL + 'buckett = "x"\n')
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['replica'\]"):
        parse_config("replica = 2\n" + FILE_POOL)


def test_sizes() -> None:
    assert parse_size("500G") == 500 << 30
    assert parse_size("4m") == 4 << 20
    assert parse_size("2TiB") == 2 << 40
    assert parse_size("123") == 123
    config = parse_config(FILE_POOL + 'capacity = "1G"\n')
    assert config.pools[0].capacity == 1 << 30
    assert parse_config(FILE_POOL + "capacity = 1000\n").pools[0].capacity == 1000


# --- S3 pools -------------------------------------------------------------------------------


def test_s3_urls() -> None:
    loc = S3Location.parse("s3://s3.example.com:9000/bucket/a/b/")
    assert loc == S3Location("s3.example.com:9000", True, "bucket", "a/b/")
    assert loc.url == "s3://s3.example.com:9000/bucket/a/b"
    plain = S3Location.parse("s3+http://127.0.0.1:8333/data")
    assert plain == S3Location("127.0.0.1:8333", False, "data", "")
    assert plain.url == "s3+http://127.0.0.1:8333/data"
    assert S3Location.parse("s3://[::1]:9000/bkt").endpoint == "[::1]:9000"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("s3://host", "no bucket"),
        ("s3://host/", "no bucket"),
        ("s3:///bucket", "no host"),
        ("s3://host/Bad_Bucket", "not a valid bucket name"),
        ("s3://host/ab", "not a valid bucket name"),
        ("s3://host/bucket/a/../b", "'..' component"),
        ("s3://host/bucket?region=x", r"no \?query"),
        ("s3://host:99999/bucket", "port"),
    ],
)
def test_bad_s3_urls(url: str, why: str) -> None:
    with pytest.raises(ConfigError, match=rf"pool p1: bad S3 URL .*{why}"):
        PoolSpec("p1", url)


def test_credentials_in_a_url_are_refused_and_not_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        PoolSpec("p1", "s3://AKID:sup3rs3cret@host/bucket")
    assert "credentials do not belong in the URL" in str(info.value)
    assert "sup3rs3cret" not in str(info.value) and "AKID" not in str(info.value)
    assert redact_url("s3://a:b@h:1/x") == "s3://***@h:1/x"


def test_s3_only_keys_on_a_file_pool_are_refused() -> None:
    with pytest.raises(ConfigError, match="pool p1: region, ca_bundle only apply to s3:// pools"):
        PoolSpec("p1", "file:///srv/p1", region="eu", ca_bundle="/ca.pem")
    with pytest.raises(ConfigError, match="file:///absolute/path"):
        PoolSpec("p1", "file://relative/path")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"access_key": "a"}, "give both access_key and secret_key, or neither"),
        ({"access_key": "a", "secret_key": "s", "credentials_file": "/c"}, "either access_key/secret_key or"),
        ({"access_key": "", "secret_key": ""}, "must not be empty"),
        ({"credentials_file": "creds.toml"}, "credentials_file must be an absolute path"),
        ({"ca_bundle": "ca.pem"}, "ca_bundle must be an absolute path"),
        ({"connections": 0}, "connections must be between 1 and"),
        ({"read_timeout": 0}, "read_timeout must be > 0"),
    ],
)
def test_bad_s3_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PoolSpec("p1", "s3://host/bucket", **kwargs)  # type: ignore[arg-type]


def test_a_ca_bundle_needs_https() -> None:
    with pytest.raises(ConfigError, match=r"ca_bundle only applies to s3:// \(HTTPS\)"):
        PoolSpec("p1", "s3+http://host/bucket", ca_bundle="/ca.pem")


def test_repr_hides_the_keys() -> None:
    spec = PoolSpec("p1", "s3://host/bucket", access_key="AKIDVISIBLE", secret_key="s3cr3t-value")
    assert "s3cr3t-value" not in repr(spec) and "AKIDVISIBLE" not in repr(spec)
    creds = Credentials("AKIDVISIBLE", "s3cr3t-value", "test")
    assert "s3cr3t-value" not in repr(creds) and "AKIDVISIBLE" not in repr(creds)


def test_to_toml_round_trips_every_setting() -> None:
    config = FsConfig(
        pools=(
            PoolSpec("local", "file:///srv/p1", weight=2.0, capacity=10 << 30),
            PoolSpec(
                "s3a",
                "s3://host:9000/bucket/pre",
                region="eu-west-1",
                path_style=True,
                ca_bundle='/etc/repfs/ca "quoted".pem',
                credentials_file="/etc/repfs/s3a.toml",
                connect_timeout=3.5,
                read_timeout=30.0,
                connections=4,
            ),
            PoolSpec("s3b", "s3+http://127.0.0.1:8333/bk2", access_key="ak", secret_key='s"k\\'),
        ),
        replicas=2,
        write_quorum=2,
        block_size=1 << 20,
    )
    text = config.to_toml()
    assert parse_config(text) == config
    assert "connect_timeout" in text and "connections = 4" in text
    assert "region" not in text.split("[[pools]]")[1]  # defaults are left out
    assert config.has_secrets and not FsConfig(pools=config.pools[:2], replicas=1, write_quorum=1).has_secrets


def test_pool_from_url_takes_s3() -> None:
    spec = pool_from_url("fast=s3://host:9000/bucket/fs1", 0)
    assert (spec.name, spec.kind, spec.s3.prefix) == ("fast", "s3", "fs1/")
    assert pool_from_url("s3+http://127.0.0.1:1/bkt", 2).name == "pool3"
    with pytest.raises(ConfigError, match="not a URL"):
        pool_from_url("ak:secret@host/bucket", 0)


# --- files holding secrets ------------------------------------------------------------------


def test_a_config_file_with_secrets_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "repfs.toml"
    path.write_text(S3_POOL + 'access_key = "ak"\nsecret_key = "very-secret"\n')
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=rf"{path} holds secrets but is mode 0644; run: chmod 600 {path}"):
        load_config(path)
    path.chmod(0o600)
    assert load_config(path).pools[0].secret_key == "very-secret"
    path.write_text(S3_POOL)
    path.chmod(0o644)
    assert read_config_file(path).pools[0].name == "s3a"  # no secrets: any mode


def test_a_missing_config_says_run_mkfs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="run 'repfs mkfs' first"):
        load_config(tmp_path / "repfs.toml")


def test_credentials_file(tmp_path: Path) -> None:
    path = tmp_path / "creds.toml"
    path.write_text('access_key = "ak"\nsecret_key = "sk"\n')
    path.chmod(0o600)
    creds = read_credentials_file(path)
    assert (creds.access_key, creds.secret_key, creds.source) == ("ak", "sk", f"credentials file {path}")
    path.chmod(0o604)
    with pytest.raises(ConfigError, match="mode 0604; run: chmod 600"):
        read_credentials_file(path)
    path.chmod(0o600)
    path.write_text('access_key = "ak"\nsecret_key = "unterminated-secret\n')
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        read_credentials_file(path)
    assert "unterminated-secret" not in str(info.value)
    path.write_text('access_key = "ak"\n')
    with pytest.raises(ConfigError, match=r"missing: \['secret_key'\]"):
        read_credentials_file(path)
    with pytest.raises(ConfigError, match="cannot read credentials file"):
        read_credentials_file(tmp_path / "none")


def test_credentials_come_from_one_place(tmp_path: Path) -> None:
    spec = PoolSpec("s3a", "s3://host/bucket")
    env = {"REPFS_S3_ACCESS_KEY": "rak", "REPFS_S3_SECRET_KEY": "rsk", "AWS_ACCESS_KEY_ID": "aak"}
    assert resolve(spec, env).access_key == "rak"
    aws = resolve(spec, {"AWS_ACCESS_KEY_ID": "aak", "AWS_SECRET_ACCESS_KEY": "ask"})
    assert (aws.access_key, aws.secret_key) == ("aak", "ask")
    assert "AWS_ACCESS_KEY_ID" in aws.source
    with pytest.raises(ConfigError, match="pool s3a: REPFS_S3_ACCESS_KEY is set but REPFS_S3_SECRET_KEY is not"):
        resolve(spec, {"REPFS_S3_ACCESS_KEY": "rak"})
    with pytest.raises(ConfigError, match="pool s3a has no S3 credentials: set credentials_file"):
        resolve(spec, {})
    inline = PoolSpec("s3a", "s3://host/bucket", access_key="iak", secret_key="isk")
    assert resolve(inline, env).access_key == "iak"
    path = tmp_path / "c.toml"
    path.write_text('access_key = "fak"\nsecret_key = "fsk"\n')
    path.chmod(0o600)
    assert resolve(PoolSpec("s3a", "s3://host/bucket", credentials_file=str(path)), env).access_key == "fak"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("s3://host:9000/bucket", "s3://host:9000/bucket/fs1"),
        ("s3://host:9000/bucket/fs", "s3+http://host:9000/bucket/fs/sub"),
        ("file:///srv/pools", "file:///srv/pools/p2"),
    ],
)
def test_pools_inside_other_pools_are_refused(a: str, b: str) -> None:
    with pytest.raises(ConfigError, match="pools p1 and p2 overlap"):
        FsConfig(pools=(PoolSpec("p1", a), PoolSpec("p2", b)), replicas=1)


def test_pools_side_by_side_are_fine() -> None:
    FsConfig(
        pools=(
            PoolSpec("p1", "s3://host/bucket/fs1"),
            PoolSpec("p2", "s3://host/bucket/fs10"),
            PoolSpec("p3", "s3://other/bucket/fs1"),
            PoolSpec("p4", "file:///srv/p1"),
            PoolSpec("p5", "file:///srv/p10"),
        ),
        replicas=1,
    )


AGES = [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("45", 45), ("2w", 14 * 86400), ("1d12h", 129600)]


@pytest.mark.parametrize(("text", "seconds"), AGES)
def test_ages_read_and_print_the_same(text: str, seconds: int) -> None:
    assert parse_age(text) == seconds
    assert parse_age(format_age(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "x", "3y", "-5", "3d x", "1.5d"])
def test_a_bad_age_is_refused_with_what_to_write(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not an age; write e\.g\. 30d"):
        parse_age(text)
