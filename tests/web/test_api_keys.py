"""API keys over real TLS: a key acts as its account inside its paths and operations
only, for files and resumable uploads; it manages nothing; it ends at once when removed
or when its account is disabled; repfs keeps no secret of it."""

from __future__ import annotations

import base64
import json

import pytest

from tests.mount.accounts_rig import admin
from tests.web.conftest import Web

pytestmark = pytest.mark.timeout(300)

TUS = {"Tus-Resumable": "1.0.0"}


def path_meta(path: str) -> str:
    return "path " + base64.b64encode(path.encode()).decode()


def test_a_key_acts_inside_its_scope_only_and_ends_when_removed(web: Web) -> None:
    alice = web.names[0]
    a = web.sign_in(alice)
    assert a.post(f"/api/v1/folders/{alice}/packets").status_code in (201, 409)
    made = a.post("/api/v1/keys", json={"paths": [f"{alice}/packets"], "ops": ["read", "write"], "label": "collector"})
    assert made.status_code == 201, made.text
    token, key_id = made.json()["token"], made.json()["id"]
    assert token.startswith(f"rk_{key_id}_") and "digest" not in made.json()
    k = web.client(token)

    assert k.put(f"/api/v1/files/{alice}/packets/p1", content=b"packet 1").status_code == 201
    assert k.get(f"/api/v1/files/{alice}/packets/p1").content == b"packet 1"
    assert k.get(f"/api/v1/list/{alice}/packets").json()["total"] >= 1
    assert k.get("/api/v1/me").json()["name"] == alice
    refusals = {
        "delete (not in its ops)": k.delete(f"/api/v1/files/{alice}/packets/p1"),
        "write outside its paths": k.put(f"/api/v1/files/{alice}/elsewhere", content=b"x"),
        "read outside its paths": k.get(f"/api/v1/list/{alice}"),
        "a look-alike folder": k.put(f"/api/v1/files/{alice}/packets-old/x", content=b"x"),
        "move out of its paths": k.post("/api/v1/move", json={"from": f"{alice}/packets/p1", "to": f"{alice}/p1"}),
        "shares": k.get("/api/v1/shares"),
        "more keys": k.post("/api/v1/keys", json={"paths": ["/"], "ops": ["read"]}),
        "a new password": k.put("/api/v1/me/password", json={"old_password": "x", "password": "y"}),
        "an upload outside": k.post("/api/v1/uploads", headers={**TUS, "Upload-Length": "1",
                                                                 "Upload-Metadata": path_meta(f"{alice}/up.bin")}),
    }
    assert {what: r.status_code for what, r in refusals.items()} == dict.fromkeys(refusals, 403)
    assert (web.fs.mnt / alice / "packets" / "p1").read_bytes() == b"packet 1"
    up = k.post("/api/v1/uploads", headers={**TUS, "Upload-Length": "3",
                                            "Upload-Metadata": path_meta(f"{alice}/packets/up.bin")})
    assert up.status_code == 201
    patch = {**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
    done = k.patch(up.headers["location"], content=b"abc", headers=patch)
    assert done.status_code == 204 and (web.fs.mnt / alice / "packets" / "up.bin").read_bytes() == b"abc"

    listed = json.loads(admin(web.sock, "users", "keys", "list", alice, "--json").stdout)["keys"]
    assert [(x["id"], x["label"], x["ops"]) for x in listed] == [(key_id, "collector", ["read", "write"])]
    assert all("digest" not in x for x in listed)
    assert token.split("_", 2)[2] not in web.fs.log_text()  # the secret is nowhere in the log

    # disabled account: the key ends with it; enabled again: it works again
    assert admin(web.sock, "users", "disable", alice).returncode == 0
    assert k.get(f"/api/v1/files/{alice}/packets/p1").status_code == 401
    assert admin(web.sock, "users", "enable", alice).returncode == 0
    assert k.get(f"/api/v1/files/{alice}/packets/p1").status_code == 200
    res = admin(web.sock, "users", "keys", "remove", alice, key_id)
    assert res.returncode == 0, res.stderr
    assert k.get(f"/api/v1/files/{alice}/packets/p1").status_code == 401  # at once
    assert web.client("rk_nosuch_key").get("/api/v1/me").status_code == 401


def test_keys_made_by_an_administrator_and_bad_requests(web: Web) -> None:
    alice = web.names[0]
    res = admin(web.sock, "users", "keys", "add", alice, "--path", f"{alice}", "--ops", "read", "--json")
    assert res.returncode == 0, res.stderr
    k = web.client(json.loads(res.stdout)["token"])
    assert k.get(f"/api/v1/list/{alice}").status_code == 200
    assert k.put(f"/api/v1/files/{alice}/nope", content=b"x").status_code == 403
    bad = admin(web.sock, "users", "keys", "add", alice, "--path", alice, "--ops", "read,fly")
    assert bad.returncode == 2 and "ops are read, write, delete" in bad.stderr
    old = admin(web.sock, "users", "keys", "add", alice, "--path", alice, "--expires", "2001-01-01")
    assert old.returncode == 2 and "expired already" in old.stderr
    a = web.sign_in(alice)
    assert a.post("/api/v1/keys", json={"paths": [], "ops": ["read"]}).status_code == 400
    gone = admin(web.sock, "users", "keys", "remove", alice, "0000000000000000")
    assert gone.returncode == 4
