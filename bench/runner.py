"""Take one system through every step: mount, run each workload in a child process with a
timeout, measure the daemon, unmount and clean up — whatever happens (try/finally).

A failing step puts "error: <why>" in its cell and the run goes on; a step that hangs is
killed at its timeout, and if the child cannot die (blocked on the mount) the mount is
aborted. Steps past the run's time budget are skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.plan import GiB, MiB, Step
from bench.proc import BenchError, drop_page_cache, free_bytes
from bench.systems import System

REPO = Path(__file__).resolve().parent.parent
Cell = dict[str, Any]  # {"value": ...} | {"error": "..."} | {"skipped": "..."}


class Progress:
    """One line per step on stderr: elapsed time, system, step."""

    def __init__(self, total_systems: int) -> None:
        self.t0 = time.monotonic()
        self.total = total_systems
        self.index = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def say(self, text: str) -> None:
        m, s = divmod(int(self.elapsed()), 60)
        print(f"[{m:2d}:{s:02d}] {text}", file=sys.stderr, flush=True)


def fill(args: dict[str, Any], root: Path) -> dict[str, Any]:
    return {k: v.replace("{root}", str(root)) if isinstance(v, str) else v for k, v in args.items()}


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the child and what it started (fio, rsync): its own process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_child(step: Step, root: Path, timeout: float, on_hang: Callable[[], None]) -> Cell:
    """Run a workload in a child process; its last line of output is the result."""
    cmd = [sys.executable, "-m", "bench.workloads", step.workload, json.dumps(fill(step.args, root))]
    proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # blocked on the mount: abort it, then it can die
            on_hang()
            proc.communicate(timeout=60)
            return {"error": f"timeout after {timeout:.0f}s", "aborted": f"mount aborted: {step.key} hung"}
        return {"error": f"timeout after {timeout:.0f}s"}
    except BaseException:  # Ctrl-C: the child goes first, so that the mount can be unmounted
        _kill_group(proc)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=10)
        raise
    lines = out.strip().splitlines()
    try:
        result: Cell = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        result = {}
    if not result:
        tail = " ".join((err.strip() or out.strip()).splitlines()[-2:])
        return {"error": f"workload exited {proc.returncode}: {tail[-300:]}"}
    return result


class Runner:
    def __init__(self, progress: Progress, deadline: float, min_free: int) -> None:
        self.progress = progress
        self.deadline = deadline  # time.monotonic() past which steps are skipped
        self.min_free = min_free

    def bench(self, system: System, plan: list[Step]) -> dict[str, Any]:
        """Every step on one system; the result for the report and the JSON."""
        cells: dict[str, Cell] = {}
        steps_log: list[dict[str, Any]] = []
        fatal = ""
        self.progress.index += 1
        tag = f"{system.name} ({self.progress.index}/{self.progress.total})"
        try:
            free = free_bytes(system.env.work)
            if free < self.min_free:
                raise BenchError(f"only {free / GiB:.1f} GiB free, need {self.min_free / GiB:.1f}")
            self.progress.say(f"{tag} · setup and mount")
            system.setup()
            system.mount()
            for step in plan:
                cell = self._step(system, step, tag, fatal)
                steps_log.append({"step": step.key, **{k: v for k, v in cell.items() if k != "differences"}})
                if step.measured:
                    cells[step.key] = cell
                if "aborted" in cell:
                    fatal = cell["aborted"]
        except BenchError as exc:
            fatal = fatal or str(exc)
            self.progress.say(f"{tag} · error: {exc}")
        finally:
            self.progress.say(f"{tag} · unmount and clean up")
            try:
                system.unmount()
            except BenchError as exc:
                self.progress.say(f"{tag} · unmount: {exc}")
                fatal = fatal or f"unmount: {exc}"
            finally:
                system.cleanup()
        for step in plan:
            if step.measured and step.key not in cells:
                cells[step.key] = {"error": fatal or "not run"}
        self._daemon_cells(system, cells)
        return {
            "title": system.title,
            "cells": cells,
            "steps": steps_log,
            "details": system.details(),
        }

    def _step(self, system: System, step: Step, tag: str, fatal: str) -> Cell:
        if fatal:
            return {"error": fatal}
        left = self.deadline - time.monotonic()
        if left <= 5:
            return {"skipped": "time budget"}
        self.progress.say(f"{tag} · {step.key} ...")
        try:
            if step.before == "cold":
                system.cold_remount()
                drop_page_cache()
            elif step.before == "drop":
                drop_page_cache()
            before = system.sample()
            t0 = time.monotonic()
            cell = run_child(step, system.root, min(step.timeout, left), system.abort)
            cell["step_s"] = time.monotonic() - t0
            if step.writes and "error" not in cell:
                t1 = time.monotonic()
                system.settle()
                cell["settle_s"] = time.monotonic() - t1
            after = system.sample()
            if before is not None and after is not None:
                cell["daemon_cpu_s"] = after.cpu_s - before.cpu_s
        except BenchError as exc:
            cell = {"error": str(exc)}
        if "timeout" in cell.get("error", "") and "aborted" not in cell and not self._answers(system):
            system.abort()
            cell["aborted"] = f"the mount stopped answering ({step.key} timed out)"
        self.progress.say(f"{tag} · {step.key}: {describe(cell)}")
        return cell

    @staticmethod
    def _answers(system: System, timeout: float = 15.0) -> bool:
        """Whether the mount still answers a stat (checked after a timeout)."""
        try:
            res = subprocess.run(["stat", str(system.root)], capture_output=True, timeout=timeout,
                                 stdin=subprocess.DEVNULL)  # fmt: skip
        except subprocess.TimeoutExpired:
            return False
        return res.returncode == 0

    @staticmethod
    def _daemon_cells(system: System, cells: dict[str, Cell]) -> None:
        if system.name == "local-dir":
            cells["peak_rss"] = {"skipped": "no daemon"}
            cells["cpu_per_gib"] = {"skipped": "no daemon"}
            return
        cells["peak_rss"] = {"value": system.peak_rss / MiB} if system.peak_rss else {"error": "not measured"}
        w = cells.get("seq_write", {})
        if "value" in w and "daemon_cpu_s" in w:
            cells["cpu_per_gib"] = {"value": w["daemon_cpu_s"] / (w["bytes"] / GiB), "cpu_s": w["daemon_cpu_s"]}
        else:
            cells["cpu_per_gib"] = {"error": "seq-write not measured"}
        r = cells.get("rsync", {})
        partial = f" (rsync exit {r.get('rsync_exit')})" if r.get("rsync_exit") else ""
        cells["rsync_identical"] = (
            {
                "value": ("yes" if r["identical"] else "NO") + partial,
                "diff_s": r.get("diff_s"),
                "differences": r["differences"],
            }
            if "identical" in r
            else {k: v for k, v in r.items() if k in ("error", "skipped")}
        )


def describe(cell: Cell) -> str:
    if "error" in cell:
        return f"error: {cell['error']}"
    if "skipped" in cell:
        return f"skipped: {cell['skipped']}"
    if "value" in cell:
        v = cell["value"]
        return f"{v:.1f} in {cell.get('step_s', 0):.1f}s" if isinstance(v, float) else str(v)
    return f"done in {cell.get('step_s', 0):.1f}s"
