"""Filesystem configuration: TOML on disk, frozen dataclasses in memory.

The configuration of a filesystem lives in `<meta-dir>/repfs.toml`, beside its
metadata, and is written by `repfs mkfs`. Defaults live here and nowhere else.

    replicas = 2
    write_quorum = 1
    block_size = 4194304

    [[pools]]
    name = "pool1"
    url = "file:///var/lib/repfs/pools/pool1"
    weight = 1.0
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from repfs.errors import ConfigError

CONFIG_NAME = "repfs.toml"

DEFAULT_REPLICAS = 2
DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024
MIN_BLOCK_SIZE = 64 * 1024
MAX_BLOCK_SIZE = 64 * 1024 * 1024
POOL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SUPPORTED_SCHEMES = ("file",)


@dataclass(frozen=True)
class PoolSpec:
    """Where one pool lives and how much of the data it should take."""

    name: str
    url: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not POOL_NAME_RE.match(self.name):
            raise ConfigError(f"pool name {self.name!r} is invalid: use letters, digits, '.', '_' or '-'")
        scheme = urlparse(self.url).scheme
        if scheme not in SUPPORTED_SCHEMES:
            raise ConfigError(
                f"pool {self.name}: unsupported URL {self.url!r}; "
                f"use one of: {', '.join(s + '://' for s in SUPPORTED_SCHEMES)}"
            )
        if not self.weight > 0:
            raise ConfigError(f"pool {self.name}: weight must be > 0, got {self.weight}")

    @property
    def path(self) -> Path:
        """The directory of a `file://` pool."""
        return Path(urlparse(self.url).path)


@dataclass(frozen=True)
class FsConfig:
    """Everything about a filesystem that is fixed at mkfs or changed by an admin."""

    pools: tuple[PoolSpec, ...]
    replicas: int = DEFAULT_REPLICAS
    write_quorum: int = 1
    block_size: int = DEFAULT_BLOCK_SIZE
    extra: dict[str, object] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.pools:
            raise ConfigError("no pools configured: give at least one --pool")
        names = [p.name for p in self.pools]
        if len(set(names)) != len(names):
            raise ConfigError(f"pool names must be unique, got {names}")
        urls = [p.url for p in self.pools]
        if len(set(urls)) != len(urls):
            raise ConfigError("the same pool URL is given twice")
        if not 1 <= self.replicas <= len(self.pools):
            raise ConfigError(
                f"replicas must be between 1 and the number of pools ({len(self.pools)}), got {self.replicas}"
            )
        if not 1 <= self.write_quorum <= self.replicas:
            raise ConfigError(f"write_quorum must be between 1 and replicas ({self.replicas}), got {self.write_quorum}")
        bs = self.block_size
        if not MIN_BLOCK_SIZE <= bs <= MAX_BLOCK_SIZE or bs & (bs - 1):
            raise ConfigError(
                f"block size must be a power of two between {MIN_BLOCK_SIZE} and {MAX_BLOCK_SIZE} bytes, got {bs}"
            )

    def to_toml(self) -> str:
        lines = [
            "# repfs filesystem configuration (written by repfs mkfs)",
            f"replicas = {self.replicas}",
            f"write_quorum = {self.write_quorum}",
            f"block_size = {self.block_size}",
        ]
        for p in self.pools:
            lines += ["", "[[pools]]", f'name = "{p.name}"', f'url = "{p.url}"', f"weight = {p.weight}"]
        return "\n".join(lines) + "\n"


_TOP_KEYS = {"replicas", "write_quorum", "block_size", "pools"}
_POOL_KEYS = {"name", "url", "weight"}


def parse_config(text: str, *, source: str = CONFIG_NAME) -> FsConfig:
    """Parse and validate a configuration; unknown keys are typos and refused."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {sorted(unknown)}; known: {sorted(_TOP_KEYS)}")
    pools = []
    for i, entry in enumerate(raw.get("pools", [])):
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: pools[{i}] must be a table")
        bad = set(entry) - _POOL_KEYS
        if bad:
            raise ConfigError(f"{source}: pools[{i}]: unknown key(s) {sorted(bad)}; known: {sorted(_POOL_KEYS)}")
        if "url" not in entry:
            raise ConfigError(f"{source}: pools[{i}] needs a url")
        pools.append(
            PoolSpec(
                name=str(entry.get("name", f"pool{i + 1}")),
                url=str(entry["url"]),
                weight=float(entry.get("weight", 1.0)),
            )
        )
    try:
        return FsConfig(
            pools=tuple(pools),
            replicas=int(raw.get("replicas", DEFAULT_REPLICAS)),
            write_quorum=int(raw.get("write_quorum", 1)),
            block_size=int(raw.get("block_size", DEFAULT_BLOCK_SIZE)),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_config(path: Path) -> FsConfig:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"no repfs filesystem at {path.parent} (missing {path.name}); run 'repfs mkfs' first"
        ) from None
    return parse_config(text, source=str(path))


def pool_from_url(url: str, index: int) -> PoolSpec:
    """A pool given on the command line: `file:///srv/p1` or `name=file:///srv/p1`."""
    name = f"pool{index + 1}"
    if "=" in url.split("://", 1)[0]:
        name, url = url.split("=", 1)
    if "://" not in url:
        raise ConfigError(f"pool {url!r} is not a URL; write it as file:///absolute/path")
    return PoolSpec(name=name, url=url)
