"""`repfs-admin users keys ...` and `users cert`: API keys and client certificates of an
account, for application servers and people that call the web API (`repfs web`).
Administrators manage anyone's; an account holder its own (through the user socket)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from repfs.admin.cliutil import (
    call,
    call_user,
    die,
    in_mount,
    is_admin,
    json_option,
    own_account,
    show,
    table,
    when,
)
from repfs.fs.apikeys import OPS


def _keys_call(ctx: click.Context, name: str, method: str, tail: str = "", body: dict[str, Any] | None = None,
               *, what: str = "keys") -> Any:  # fmt: skip
    if is_admin(ctx):
        return call(ctx, method, f"/v1/users/{quote(name)}/{what}{tail}", body)
    own_account(ctx, name)  # your own account only
    return call_user(ctx, method, f"/v1/me/{what}{tail}", body)


def _rows(answer: dict[str, Any]) -> str:
    if not answer["keys"]:
        return "no API keys"
    rows = [[k["id"], k.get("kind", "token"), k["label"] or "-", ",".join(k["ops"]), " ".join(k["paths"]),
             when(k["created"]), when(k["expires"]) if k["expires"] else "never"] for k in answer["keys"]]  # fmt: skip
    return table(rows, ["ID", "KIND", "LABEL", "OPS", "PATHS", "CREATED", "EXPIRES"])


@click.group()
def keys() -> None:
    """API keys: credentials an application server uses for the web API, acting as the
    account inside the key's paths and operations only."""


@keys.command("list")
@click.argument("name")
@json_option
@click.pass_context
def keys_list(ctx: click.Context, name: str, as_json: bool) -> None:
    """The keys of account NAME (never their secrets)."""
    show(_keys_call(ctx, name, "GET"), as_json, _rows)


@keys.command("add")
@click.argument("name")
@click.option("--path", "paths", multiple=True, required=True, metavar="PATH",
              help="A folder the key may use, and all in it (again for more).")  # fmt: skip
@click.option("--ops", default="read", show_default=True, metavar="OPS", help=f"What it may do: {', '.join(OPS)}.")
@click.option("--label", default="", help="What it is for (shown in lists).")
@click.option("--expires", metavar="YYYY-MM-DD", help="The last day it may be used [default: never].")
@json_option
@click.pass_context
def keys_add(
    ctx: click.Context, name: str, paths: tuple[str, ...], ops: str, label: str, expires: str | None, as_json: bool
) -> None:
    """Make an API key for account NAME; its token is shown once."""
    wanted = [o.strip() for o in ops.split(",") if o.strip()]
    body: dict[str, Any] = {"paths": [in_mount(p) for p in paths], "ops": wanted, "label": label}
    if expires:
        body["expires"] = expires
    answer = _keys_call(ctx, name, "POST", "", body)
    show(answer, as_json, lambda a: f"API key {a['id']} for {a['account']}: {a['token']}\n"
         "(keep it: it is not shown again; send it as Authorization: Bearer TOKEN)")  # fmt: skip


@keys.command("remove")
@click.argument("name")
@click.argument("key_id")
@json_option
@click.pass_context
def keys_remove(ctx: click.Context, name: str, key_id: str, as_json: bool) -> None:
    """Remove (revoke) key KEY_ID of account NAME (a token or a client certificate): it
    stops working at once."""
    answer = _keys_call(ctx, name, "DELETE", f"/{quote(key_id)}")
    show(answer, as_json, lambda a: f"API key {a['id']} of {a['account']} removed")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


@click.command("cert")
@click.argument("name")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Folder for NAME.key, NAME.crt and repfs-ca.crt.")  # fmt: skip
@click.option("--days", type=click.IntRange(1, 3650), default=365, show_default=True, help="How long it is valid.")
@click.option("--path", "paths", multiple=True, metavar="PATH",
              help="Limit it to a folder (again for more) [default: all].")  # fmt: skip
@click.option("--ops", default="read,write,delete", show_default=True, metavar="OPS",
              help=f"What it may do: {', '.join(OPS)}.")  # fmt: skip
@click.option("--label", default="", help="What it is for (shown in `users keys list`).")
@json_option
@click.pass_context
def cert(
    ctx: click.Context, name: str, out_dir: Path, days: int, paths: tuple[str, ...], ops: str, label: str,
    as_json: bool,
) -> None:
    """Make a client certificate for account NAME: a TLS connection to `repfs web` that
    presents it is that account. The private key is made here and never leaves this host;
    repfs signs its public key. Revoke it with `users keys remove NAME ID`."""
    files = [out_dir / f"{name}.key", out_dir / f"{name}.crt", out_dir / "repfs-ca.crt"]
    for f in files[:2]:
        if f.exists():
            die(f"{f} exists: give another --out, or remove it first", 5)
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    body: dict[str, Any] = {"public_key": public.decode(), "days": days, "label": label,
                            "ops": [o.strip() for o in ops.split(",") if o.strip()]}  # fmt: skip
    if paths:
        body["paths"] = [in_mount(p) for p in paths]
    answer = _keys_call(ctx, name, "POST", "", body, what="cert")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_private(files[0], key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))  # fmt: skip
        files[1].write_text(answer["cert"])
        files[2].write_text(answer["ca"])
    except OSError as exc:
        die(f"cannot write the certificate files: {exc}", 1)
    show({**answer, "files": [str(f) for f in files]}, as_json, lambda a: (
        f"client certificate {a['id']} for {a['account']}, valid until {when(a['expires'])}:\n"
        f"  {files[0]} (private key, 0600)\n  {files[1]}\n  {files[2]} (the CA that signed it)\n"
        f"use: curl --cert {files[1]} --key {files[0]} https://HOST:8443/api/v1/me"))
