"""One grid run: the benchmark-run notebook executed by papermill in its own process.

Each run gets its own papermill process (and kernel), so a run that fails or is killed
takes nothing else down; the trainer keeps the record out of runs/ until it is finished
and resumes from the run's checkpoint when the run is tried again.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from ..trainer import RunConfig, records

NOTEBOOK = Path(__file__).resolve().parents[3] / "notebooks" / "benchmark_run.ipynb"
EXECUTED_NAME = "notebook.ipynb"


@dataclasses.dataclass
class Outcome:
    run_path: str
    status: str  # done | failed | busy (another process holds the run)
    reason: str = ""
    seconds: float = 0.0


def notebook_parameters(cfg: RunConfig, runs_dir: Path, checkpoint_dir: Path | None, data_root: Path | None,
                        threads: int | None) -> dict:
    params = cfg.to_dict()
    params.update(runs_dir=str(runs_dir), checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None,
                  data_root=str(data_root) if data_root else None, threads=threads, resume=True, progress=False)
    return params


def run_notebook(notebook: Path, output: Path, params: dict, env: dict[str, str] | None = None,
                 timeout: float | None = None) -> str | None:
    """Execute ``notebook`` into ``output`` with papermill in a child process; None on success, else why it failed."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(params, f)
    cmd = [sys.executable, "-m", "papermill", str(notebook), str(output), "-f", f.name, "--no-progress-bar",
           "-k", "python3", "--cwd", str(notebook.parent)]
    try:
        proc = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f} s"
    finally:
        os.unlink(f.name)
    if proc.returncode == 0:
        return None
    return _error_in(output) or _last_line(proc.stderr) or f"papermill exited with {proc.returncode}"


def execute_run(cfg: RunConfig, runs_dir: Path, checkpoint_dir: Path | None = None, data_root: Path | None = None,
                threads: int | None = None, env: dict[str, str] | None = None, notebook: Path = NOTEBOOK) -> Outcome:
    """Run one configuration and put the executed notebook beside its finished record."""
    runs_dir = Path(runs_dir).resolve()
    checkpoint_dir = Path(checkpoint_dir).resolve() if checkpoint_dir else None
    work = (checkpoint_dir or runs_dir / ".checkpoints") / cfg.run_path()
    started = time.perf_counter()
    params = notebook_parameters(cfg, runs_dir, checkpoint_dir, data_root and Path(data_root).resolve(), threads)
    run_dir = runs_dir / cfg.run_path()
    with run_lock(work) as mine:
        if not mine:
            return Outcome(str(cfg.run_path()), "busy", "another lossnb grid is running it")
        if records.is_finished(run_dir):  # finished by someone else since the plan was made
            return Outcome(str(cfg.run_path()), "done", "finished elsewhere")
        error = run_notebook(notebook, work / EXECUTED_NAME, params, env)
    seconds = time.perf_counter() - started
    if error is not None:
        return Outcome(str(cfg.run_path()), "failed", error, seconds)
    if not records.is_finished(run_dir):
        return Outcome(str(cfg.run_path()), "failed", "the notebook ended without a finished record", seconds)
    records.atomic_write_text(run_dir / EXECUTED_NAME, (work / EXECUTED_NAME).read_text())
    return Outcome(str(cfg.run_path()), "done", records.read_summary(run_dir)["status"], seconds)


@contextlib.contextmanager
def run_lock(work: Path):
    """Yields whether this process got the run. An flock, so a killed holder releases it with its death:
    two grids started on the same runs/ share the work instead of training the same run twice."""
    work.mkdir(parents=True, exist_ok=True)
    with open(work / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _error_in(output: Path) -> str | None:
    try:
        nb = json.loads(output.read_text())
    except (OSError, ValueError):
        return None
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return f"{out.get('ename')}: {out.get('evalue')}"
    return None


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""
