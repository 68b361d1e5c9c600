"""Where the repfs daemon spends its time: py-spy samples it during chosen workloads.

py-spy attaches to the running daemon (`--nonblocking`: the daemon is never paused) and
writes collapsed stacks, kept gzipped for a flame graph. The report lists the functions
with the most samples on top of the stack (self, any code) and, among repfs's own
functions, anywhere in it (total: the function and what it calls). Idle threads are not
sampled.
"""

from __future__ import annotations

import gzip
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.plan import Step
from bench.proc import BenchError, drop_page_cache, tool
from bench.runner import Progress, run_child
from bench.systems import System

_LINE = re.compile(r":\d+\)$")


def frame_name(frame: str) -> str:
    """'flush (repfs/cache/blockcache.py:120)' -> 'flush (repfs/cache/blockcache.py)', paths shortened."""
    frame = _LINE.sub(")", frame.strip())
    for marker in ("/site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in frame:
            head, _, tail = frame.partition("(")
            frame = f"{head}({tail.split(marker, 1)[-1]}"
    return frame


def hot_spots(collapsed: str, n: int = 15) -> dict[str, Any]:
    """Top functions by self samples (any code) and by total samples (repfs's functions, with
    everything they call) from py-spy's raw (collapsed) output."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        frames = [frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        samples += c
        own[frames[-1]] += c
        for f in set(frames):
            if "(repfs/" in f and "(repfs/cli.py)" not in f:  # inclusive: repfs's functions, not the entry
                total[f] += c

    def top(counter: Counter[str]) -> list[dict[str, Any]]:
        return [{"function": f, "samples": c, "share": c / samples} for f, c in counter.most_common(n)]

    return {"samples": samples, "self": top(own), "total": top(total)}


def profile(system: System, plan: list[Step], out_dir: Path, progress: Progress, rate: int = 250) -> dict[str, Any]:
    """Run `plan` on `system` with py-spy on its daemon; hot spots per step."""
    out: dict[str, Any] = {}
    spy_bin = tool("py-spy")
    try:
        progress.say(f"profile {system.name} · setup and mount")
        system.setup()
        system.mount()
        for step in plan:
            if step.before == "drop":
                drop_page_cache()
            pid = system.pid()
            if pid is None:
                raise BenchError(f"{system.name} has no daemon")
            raw = out_dir / f"{system.name}-{step.key}.collapsed"
            spy = subprocess.Popen(
                [spy_bin, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "--nonblocking",
                 "--output", str(raw)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            time.sleep(1.0)  # let py-spy attach
            progress.say(f"profile {system.name} · {step.key} ...")
            cell = run_child(step, system.root, step.timeout, system.abort)
            spy.send_signal(signal.SIGINT)
            try:
                _, err = spy.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                spy.kill()
                _, err = spy.communicate()
            system.settle()
            entry: dict[str, Any] = {"result": cell}
            if raw.exists():
                text = raw.read_text()
                entry |= hot_spots(text)
                packed = raw.with_name(raw.name + ".gz")
                packed.write_bytes(gzip.compress(text.encode()))
                raw.unlink()
                entry["collapsed"] = str(packed)
            else:
                entry["error"] = f"py-spy wrote nothing: {err.strip()[-300:]}"
            out[step.key] = entry
            progress.say(f"profile {system.name} · {step.key}: {entry.get('samples', 0)} samples")
    finally:
        try:
            system.unmount()
        finally:
            system.cleanup()
    return out


def render(profiles: dict[str, dict[str, Any]], n: int = 12) -> str:
    lines: list[str] = []
    for system, steps in profiles.items():
        for key, p in steps.items():
            if "error" in p:
                lines.append(f"{system} · {key}: error: {p['error']}")
                continue
            v = p["result"].get("value")
            rate = f"{v:,.0f}/s" if isinstance(v, float) else str(p["result"].get("error", ""))
            title = "top self (any code) / top total (repfs functions)"
            lines.append(f"{system} · {key} ({rate}, {p['samples']} samples): {title}")
            for own, tot in zip(p["self"][:n], p["total"][:n], strict=False):
                lines.append(f"  {own['share']:5.1%} {own['function'][:70]:70}  {tot['share']:5.1%} {tot['function']}")
            lines.append("")
    return "\n".join(lines)
