"""The web interface's bench: pages answered from counters, and many clients at once.

    .venv/bin/python -m bench.web [--quick] [--only pages|load]

On the embedded default (3 local directory pools, 2 replicas, default cache), mounted with
`-o allow_other`, and `repfs web` over it with the certificate it makes:

- **pages**: the users page with ACCOUNTS accounts and a folder of FILES files, as the API
  answers them (median of 5 calls) and as Debian's headless Chromium shows them (from the
  change of view to the last row drawn, median of 3), beside `ls -l` of the same folder on
  the mount and on a local directory;
- **load**: CLIENTS clients over TLS for SECONDS, half downloading SIZE files, half uploading
  them with tus (8 MiB chunks, as the page does), each in a loop: MB/s, p50/p99 of a whole
  transfer, errors, transfers cut by the end, the peak RSS of the web process and of the
  daemon, and the p99 of FUSE operations (stat, open-read-close, a small listing) on the
  mount during the load beside the same while idle.

It prints a table and writes bench/results/web-<UTC time>[-quick].json. It asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import secrets
import shutil
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.proc import proc_stats
from repfs.admin.client import AdminClient
from tests.helpers import Repfs, public_filesystem
from tests.web.conftest import start_web, stop_web

RESULTS = Path(__file__).parent / "results"
MB = 1 << 20
CHUNK = 8 * MB
PASSWORD = "bench password, long enough"


@dataclass
class Sizes:
    accounts: int
    files: int
    clients: int
    seconds: float
    size: int  # bytes of one transfer


FULL = Sizes(accounts=1000, files=10_000, clients=400, seconds=120, size=25 * MB)
QUICK = Sizes(accounts=100, files=2000, clients=40, seconds=20, size=5 * MB)


@dataclass
class Rig:
    fs: Repfs
    sock: Path
    url: str
    cert: Path
    web_pid: int
    admin: str
    group: str
    made_users: list[str] = field(default_factory=list)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(
            base_url=self.url, verify=ssl.create_default_context(cafile=str(self.cert)), headers=headers, timeout=120
        )


@contextlib.contextmanager
def rig() -> Iterator[Rig]:
    sock = Path(tempfile.mkdtemp(prefix="repfs-adm-", dir="/tmp")) / "s"
    group, admin = f"wba{secrets.token_hex(3)}", f"wbadm{secrets.token_hex(2)}"
    subprocess.run(["groupadd", group], check=True, timeout=30)
    made: list[str] = []
    try:
        with public_filesystem(  # the embedded default's 4 MiB blocks, not the tests' 64 KiB
            None,
            "--admin-socket", str(sock), "--admin-group", group, "--cache-size", "2G", "--max-dirty", "512M",
            block_size="4M",
        ) as fs:
            adm = AdminClient(sock, timeout=60)
            adm.request(
                "POST",
                "/v1/users",
                {"name": admin, "email": f"{admin}@example.org", "create_system_user": True, "password": PASSWORD},
            )
            made.append(admin)
            subprocess.run(["usermod", "-aG", group, admin], check=True, timeout=30)
            proc, url, _ = start_web(
                fs, fs.base / "web", "--admin-socket", str(sock), "--admin-group", group, "--rate", "0"
            )
            try:
                r = Rig(fs, sock, url, fs.base / "web" / "cert.pem", proc.pid, admin, group, made)
                yield r
            finally:
                stop_web(proc)
    finally:
        for name in made:
            subprocess.run(["userdel", name], capture_output=True, timeout=30)
            subprocess.run(["groupdel", name], capture_output=True, timeout=30)
        subprocess.run(["groupdel", group], capture_output=True, timeout=30)
        shutil.rmtree(sock.parent, ignore_errors=True)


def give(path: Path, account: str) -> None:
    """What the bench made as root, given to the account (as if it had made it)."""
    subprocess.run(["chown", "-R", f"{account}:{account}", str(path)], check=True, timeout=600)


def median_time(fn: Any, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# --- pages ------------------------------------------------------------------------------
RENDER = """
const [hash, css, want, done] = [arguments[0], arguments[1], arguments[2], arguments[arguments.length - 1]];
const t = performance.now();
location.hash = hash;
(function look() {
  const n = document.querySelectorAll(css).length;
  if (n >= want) { requestAnimationFrame(() => done(performance.now() - t)); } else { setTimeout(look, 5); }
})();
"""


def pages(r: Rig, sizes: Sizes) -> dict[str, Any]:
    adm = AdminClient(r.sock, timeout=60)
    t = time.perf_counter()
    for i in range(sizes.accounts - 1):
        name = f"wb{secrets.token_hex(3)}{i}"
        adm.request("POST", "/v1/users", {"name": name, "email": f"{name}@example.org", "create_system_user": True})
        r.made_users.append(name)
    made_accounts = time.perf_counter() - t
    folder = r.fs.mnt / r.admin / "big"
    folder.mkdir()
    t = time.perf_counter()
    for i in range(sizes.files):
        (folder / f"file-{i:06d}.txt").write_bytes(b"x" * 100)
    made_files = time.perf_counter() - t
    give(folder, r.admin)
    local = Path(tempfile.mkdtemp(prefix="repfs-bench-local-"))
    for i in range(sizes.files):
        (local / f"file-{i:06d}.txt").write_bytes(b"x" * 100)
    with r.client() as c:
        token = c.post("/api/v1/token", json={"login": r.admin, "password": PASSWORD}).json()["token"]
    out: dict[str, Any] = {
        "accounts": sizes.accounts,
        "files": sizes.files,
        "made_accounts_s": made_accounts,
        "made_files_s": made_files,
    }
    with r.client(token) as c:
        assert len(c.get("/api/v1/users").json()["users"]) == sizes.accounts
        out["api_users_s"] = median_time(lambda: c.get("/api/v1/users").raise_for_status(), 5)
        listing = f"/api/v1/list/{r.admin}/big?limit=100"
        answer = c.get(listing).json()
        assert answer.get("total") == sizes.files, answer
        out["api_folder_s"] = median_time(lambda: c.get(listing).raise_for_status(), 5)
    out["ls_mount_s"] = median_time(
        lambda: subprocess.run(["ls", "-l", str(folder)], capture_output=True, check=True), 5
    )
    out["ls_local_s"] = median_time(
        lambda: subprocess.run(["ls", "-l", str(local)], capture_output=True, check=True), 5
    )
    shutil.rmtree(local, ignore_errors=True)
    out.update(browser_times(r, token, sizes))
    return out


def browser_times(r: Rig, token: str, sizes: Sizes) -> dict[str, Any]:
    from tests.web.browser import Browser

    work = Path(tempfile.mkdtemp(prefix="repfs-bench-browser-"))
    b = Browser(r.url, r.cert, work / "profile", work / "downloads")
    try:
        b.open("#/login")
        b.js("sessionStorage.setItem('repfs.token', arguments[0])", token)
        b.driver.refresh()  # the page reads its sign-in when it loads
        b.open("#/account")
        b.shown("#usage")
        users, folder = [], []
        for _ in range(3):
            b.open("#/account")
            b.shown("#usage")
            users.append(
                b.driver.execute_async_script(RENDER, "#/admin/users", "#users tbody tr", sizes.accounts) / 1000
            )
            b.open("#/account")
            b.shown("#usage")
            folder.append(
                b.driver.execute_async_script(RENDER, f"#/files/{r.admin}/big", "#listing tbody tr", 100) / 1000
            )
        assert f"of {sizes.files}" in b.find("#count").text
        return {"page_users_s": statistics.median(users), "page_folder_s": statistics.median(folder)}
    finally:
        b.close()
        shutil.rmtree(work, ignore_errors=True)


# --- load -------------------------------------------------------------------------------
def client_process(
    url: str,
    cert: str,
    tokens: list[str],
    roles: list[str],
    sources: list[str],
    home: str,
    size: int,
    seconds: float,
    out: Any,
) -> None:
    """One process of clients (asyncio), each in a loop until the time is up."""
    results: list[dict[str, Any]] = []
    body = os.urandom(CHUNK)

    async def one(i: int, token: str, role: str, deadline: float) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        ctx = ssl.create_default_context(cafile=cert)
        async with httpx.AsyncClient(base_url=url, verify=ctx, headers=headers, timeout=300) as c:
            n = 0
            while time.monotonic() < deadline:
                start = time.monotonic()
                try:
                    if role == "down":
                        got = 0
                        async with c.stream("GET", f"/api/v1/files/{sources[i % len(sources)]}") as res:
                            res.raise_for_status()
                            async for data in res.aiter_bytes(1 << 20):
                                got += len(data)
                                if time.monotonic() > deadline + 60:
                                    raise TimeoutError("cut")
                        assert got == size, got
                    else:
                        meta = f"path {_b64(f'{home}/load/u{i}.bin')}"
                        res = await c.post(
                            "/api/v1/uploads",
                            headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(size), "Upload-Metadata": meta},
                        )
                        res.raise_for_status()
                        where, offset = res.headers["location"], 0
                        while offset < size:
                            n_bytes = min(CHUNK, size - offset)
                            res = await c.patch(
                                where,
                                content=body[:n_bytes],
                                headers={
                                    "Tus-Resumable": "1.0.0",
                                    "Upload-Offset": str(offset),
                                    "Content-Type": "application/offset+octet-stream",
                                },
                            )
                            res.raise_for_status()
                            offset = int(res.headers["upload-offset"])
                    results.append(
                        {"role": role, "seconds": time.monotonic() - start, "ok": True, "finished": time.monotonic()}
                    )
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    results.append(
                        {
                            "role": role,
                            "seconds": time.monotonic() - start,
                            "ok": False,
                            "error": repr(exc)[:200],
                            "finished": time.monotonic(),
                        }
                    )
                n += 1

    async def main() -> None:
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(one(i, t, r, deadline) for i, (t, r) in enumerate(zip(tokens, roles, strict=True))))

    asyncio.run(main())
    out.put(results)


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def fuse_probe(mnt: Path, stop: threading.Event, into: list[float]) -> None:
    """Small FUSE operations in a loop, each timed: what a person on the mount feels."""
    probe = mnt / "probe"
    probe.mkdir(exist_ok=True)
    (probe / "small").write_bytes(os.urandom(4096))
    while not stop.is_set():
        for op in (lambda: os.stat(probe / "small"), lambda: (probe / "small").read_bytes(), lambda: os.listdir(probe)):
            t = time.perf_counter()
            op()
            into.append(time.perf_counter() - t)
        time.sleep(0.02)


def p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def load(r: Rig, sizes: Sizes) -> dict[str, Any]:
    adm = AdminClient(r.sock, timeout=60)
    home = r.admin
    (r.fs.mnt / home / "load").mkdir(exist_ok=True)
    sources = []
    for i in range(8):
        path = r.fs.mnt / home / "load" / f"src{i}.bin"
        with open(path, "wb") as f:
            f.write(os.urandom(sizes.size))
        sources.append(f"{home}/load/src{i}.bin")
    give(r.fs.mnt / home / "load", home)
    keys = [  # an account has at most 100 keys; the bench runs with --rate 0, so clients may share them
        adm.request("POST", f"/v1/users/{home}/keys", {"paths": [home], "ops": ["read", "write", "delete"]})["token"]
        for _ in range(min(50, sizes.clients))
    ]
    tokens = [keys[i % len(keys)] for i in range(sizes.clients)]
    roles = ["down" if i % 2 == 0 else "up" for i in range(sizes.clients)]
    idle: list[float] = []
    stop = threading.Event()
    probe = threading.Thread(target=fuse_probe, args=(r.fs.mnt / home, stop, idle))
    probe.start()
    time.sleep(min(10.0, sizes.seconds / 2))
    stop.set()
    probe.join()
    daemon_pid = r.fs.proc.pid if r.fs.proc else 0
    peaks = {"web": 0, "daemon": 0}
    busy: list[float] = []
    stop = threading.Event()
    probe = threading.Thread(target=fuse_probe, args=(r.fs.mnt / home, stop, busy))

    def watch() -> None:
        while not stop.is_set():
            for name, pid in (("web", r.web_pid), ("daemon", daemon_pid)):
                st = proc_stats(pid)
                if st is not None:
                    peaks[name] = max(peaks[name], st.peak_rss)
            time.sleep(0.5)

    watcher = threading.Thread(target=watch)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    nproc = 2
    procs = [
        ctx.Process(
            target=client_process,
            args=(
                r.url,
                str(r.cert),
                tokens[k::nproc],
                roles[k::nproc],
                sources,
                home,
                sizes.size,
                sizes.seconds,
                queue,
            ),
        )
        for k in range(nproc)
    ]
    started = time.monotonic()
    probe.start()
    watcher.start()
    for pr in procs:
        pr.start()
    results: list[dict[str, Any]] = []
    for _ in procs:
        results += queue.get(timeout=sizes.seconds + 600)
    for pr in procs:
        pr.join(60)
    elapsed = time.monotonic() - started
    stop.set()
    probe.join()
    watcher.join()
    done = [x for x in results if x["ok"]]
    errors = [x for x in results if not x["ok"] and "cut" not in x.get("error", "")]
    took = [x["seconds"] for x in done]
    return {
        "clients": sizes.clients,
        "seconds": sizes.seconds,
        "size": sizes.size,
        "elapsed_s": elapsed,
        "transfers": len(done),
        "downloads": sum(1 for x in done if x["role"] == "down"),
        "uploads": sum(1 for x in done if x["role"] == "up"),
        "errors": len(errors),
        "error_kinds": sorted({x["error"] for x in errors})[:5],
        "mb_per_s": len(done) * sizes.size / MB / elapsed,
        "p50_s": p(took, 0.5),
        "p99_s": p(took, 0.99),
        "rss_web_mib": peaks["web"] / MB,
        "rss_daemon_mib": peaks["daemon"] / MB,
        "fuse_idle_p99_ms": p(idle, 0.99) * 1000,
        "fuse_load_p99_ms": p(busy, 0.99) * 1000,
        "fuse_idle_ops": len(idle),
        "fuse_load_ops": len(busy),
    }


def report(found: dict[str, Any]) -> str:
    lines = []
    if "pages" in found:
        g = found["pages"]
        lines += [
            f"pages ({g['accounts']} accounts, a folder of {g['files']} files):",
            f"  users page      API {g['api_users_s'] * 1000:7.0f} ms   Chromium {g['page_users_s'] * 1000:7.0f} ms",
            f"  folder page     API {g['api_folder_s'] * 1000:7.0f} ms   Chromium {g['page_folder_s'] * 1000:7.0f} ms"
            f"   | ls -l: mount {g['ls_mount_s'] * 1000:.0f} ms, local dir {g['ls_local_s'] * 1000:.0f} ms",
        ]
    if "load" in found:
        g = found["load"]
        lines += [
            f"load ({g['clients']} clients over TLS, {g['seconds']:.0f} s, {g['size'] // MB} MiB each, "
            "half up (tus), half down):",
            f"  {g['mb_per_s']:.1f} MB/s, {g['transfers']} transfers ({g['uploads']} up, {g['downloads']} down), "
            f"p50 {g['p50_s']:.1f} s, p99 {g['p99_s']:.1f} s, errors {g['errors']}",
            f"  peak RSS: web {g['rss_web_mib']:.0f} MiB, daemon {g['rss_daemon_mib']:.0f} MiB",
            f"  FUSE p99: idle {g['fuse_idle_p99_ms']:.1f} ms, under load {g['fuse_load_p99_ms']:.1f} ms "
            f"({g['fuse_load_p99_ms'] / max(g['fuse_idle_p99_ms'], 1e-9):.1f}x)",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.web", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a few minutes")
    parser.add_argument("--only", choices=["pages", "load"])
    parser.add_argument("--clients", type=int)
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.clients:
        sizes.clients = args.clients
    if args.seconds:
        sizes.seconds = args.seconds
    found: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "kernel": platform.release()},
        "sizes": sizes.__dict__,
        "started": time.time(),
    }
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = RESULTS / f"web-{stamp}{'-quick' if args.quick else ''}.json"
    with rig() as r:
        if args.only in (None, "pages"):
            found["pages"] = pages(r, sizes)
            print(report({"pages": found["pages"]}), flush=True)
            out.write_text(json.dumps(found, indent=1))  # kept if the load fails
        if args.only in (None, "load"):
            found["load"] = load(r, sizes)
            print(report({"load": found["load"]}), flush=True)
    out.write_text(json.dumps(found, indent=1))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
