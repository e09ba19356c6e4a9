"""One pack of grid runs: `lossnb train --config PACK.json` in its own process.

The child is the trainer, and the trainer holds each run's lock for as long as it trains: a grid killed
with SIGKILL takes its child with it (the kernel signals the child when its parent dies), and a child that
somehow lives on keeps its runs locked, so no run is ever trained twice at once. A failed or killed pack
takes nothing else down, and its runs resume from their checkpoints when the grid is run again.
"""
from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ..trainer import RunConfig, records
from ..trainer.workspace import BUSY_EXIT


@dataclasses.dataclass
class Outcome:
    run_path: str
    status: str  # done | failed | busy (another process holds the run)
    reason: str = ""
    seconds: float = 0.0


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent (the grid) dies, however it dies (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


_CHILDREN: set[subprocess.Popen] = set()  # the packs training now, for stop_children
_LOCK = threading.Lock()


def stop_children(sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to every pack this process is training (each saves its checkpoints and exits), so that a
    grid that is itself told to stop waits for them, cleans up and reports."""
    with _LOCK:
        children = list(_CHILDREN)
    for proc in children:
        if proc.poll() is None:
            proc.send_signal(sig)


def log_path(runs_dir: Path, cfgs: list[RunConfig]) -> Path:
    """The pack's progress and errors, beside its staging records: tail it to watch a long pack."""
    return (Path(runs_dir) / ".logs" / cfgs[0].run_path()).with_suffix(".log")


def execute_pack(cfgs: list[RunConfig], runs_dir: Path, checkpoint_dir: Path | None = None,
                 data_root: Path | None = None, threads: int | None = None,
                 env: dict[str, str] | None = None, replace_broken: bool = False,
                 keep_checkpoints: bool = False) -> list[Outcome]:
    """Train the pack in a child process; one Outcome per run."""
    runs_dir = Path(runs_dir).resolve()
    started = time.perf_counter()
    log = log_path(runs_dir, cfgs)
    log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([c.to_dict() for c in cfgs], f)
    cmd = [sys.executable, "-m", "lossnb.cli", "train", "--config", f.name, "--runs-dir", str(runs_dir), "--resume"]
    if checkpoint_dir:
        cmd += ["--checkpoint-dir", str(Path(checkpoint_dir).resolve())]
    if data_root:
        cmd += ["--data-root", str(Path(data_root).resolve())]
    if replace_broken:
        cmd += ["--replace-broken"]
    if keep_checkpoints:
        cmd += ["--keep-checkpoints"]
    child_env = {**os.environ, **(env or {})}
    if threads:
        child_env["OMP_NUM_THREADS"] = str(threads)
    try:
        with open(log, "a") as err:
            proc = subprocess.Popen(cmd, env=child_env, stdout=subprocess.DEVNULL, stderr=err, text=True,
                                    preexec_fn=_die_with_parent)
            with _LOCK:
                _CHILDREN.add(proc)
            try:
                proc.wait()
            finally:
                with _LOCK:
                    _CHILDREN.discard(proc)
    finally:
        os.unlink(f.name)
    seconds = time.perf_counter() - started
    return [_outcome(cfg, runs_dir, proc.returncode, log, seconds) for cfg in cfgs]


def _outcome(cfg: RunConfig, runs_dir: Path, code: int, log: Path, seconds: float) -> Outcome:
    path = str(cfg.run_path())
    summary = records.read_summary(runs_dir / path)
    if summary and summary.get("status") in records.FINISHED:
        return Outcome(path, "done", summary["status"], seconds)
    if code == BUSY_EXIT:
        return Outcome(path, "busy", "another process is training it")
    if code < 0:  # killed: the signal is the reason, not whatever the log's last line was
        return Outcome(path, "failed", f"killed by signal {-code} ({signal.Signals(-code).name}); the grid run "
                       "again resumes it from its checkpoints", seconds)
    return Outcome(path, "failed", _last_line(log) or f"lossnb train exited with {code}", seconds)


def _last_line(log: Path) -> str:
    try:
        text = log.read_text(errors="replace").replace("\r", "\n")
    except OSError:
        return ""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""
