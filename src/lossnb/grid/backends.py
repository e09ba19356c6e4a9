"""Where grid runs execute: local worker processes, or Ray tasks on a cluster."""
from __future__ import annotations

import base64
import os
import tempfile
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm  # text bars: tqdm.auto would need ipywidgets (and a CDN) in notebooks

from ..trainer import RunConfig, records
from ..trainer.environment import git_commit
from .execute import NOTEBOOK, Outcome, execute_run

BACKENDS = ("local", "ray")


def local_slots(workers: int | None) -> list[dict[str, str]]:
    """One environment per worker: a GPU each where there are GPUs, else an equal share of the CPU cores."""
    gpus = torch.cuda.device_count()
    if workers is None:
        workers = gpus or 1
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if gpus:
        return [{"CUDA_VISIBLE_DEVICES": str(i % gpus)} for i in range(workers)]
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    return [{"OMP_NUM_THREADS": threads, "CUDA_VISIBLE_DEVICES": ""} for _ in range(workers)]


def run_local(runs: list[RunConfig], runs_dir: Path, *, workers: int | None = None,
              checkpoint_dir: Path | None = None, data_root: Path | None = None, notebook: Path = NOTEBOOK,
              on_start: Callable = lambda cfg: None, on_done: Callable = lambda outcome: None) -> list[Outcome]:
    slots = local_slots(workers)
    free, outcomes, pending = list(range(len(slots))), [], list(runs)
    with ThreadPoolExecutor(len(slots)) as pool:
        running = {}
        while pending or running:
            while pending and free:
                cfg, slot = pending.pop(0), free.pop(0)
                env = slots[slot]
                threads = int(env["OMP_NUM_THREADS"]) if "OMP_NUM_THREADS" in env else None
                on_start(cfg)
                running[pool.submit(execute_run, cfg, runs_dir, checkpoint_dir, data_root, threads, env,
                                    notebook)] = (cfg, slot)
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                cfg, slot = running.pop(future)
                free.append(slot)
                try:
                    outcome = future.result()
                except Exception as err:  # a broken worker is one failed run, never the end of the grid
                    outcome = Outcome(str(cfg.run_path()), "failed", f"{type(err).__name__}: {err}")
                outcomes.append(outcome)
                on_done(outcome)
    return outcomes


def run_ray(runs: list[RunConfig], runs_dir: Path, *, address: str | None = None, gpus_per_run: float | None = None,
            cpus_per_run: float = 1, checkpoint_dir: Path | None = None, data_root: Path | None = None,
            notebook: Path = NOTEBOOK, on_start: Callable = lambda cfg: None,
            on_done: Callable = lambda outcome: None) -> list[Outcome]:
    """Each run is a Ray task (one GPU each where the cluster has GPUs). A task runs on its node's local
    disk and returns its record's files, which are written here into the same runs/; Ray retries a task
    whose worker died, and the retry resumes from the checkpoint if it lands on the same node."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("the ray backend needs Ray: pip install 'lossnb[ray]'") from None
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    if gpus_per_run is None:
        gpus_per_run = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    task = ray.remote(num_gpus=gpus_per_run, num_cpus=cpus_per_run, max_retries=3)(_ray_run)
    notebook_text = Path(notebook).read_text()
    git_env = _git_env()  # a worker's copy of the code may come without .git
    futures = {}
    for cfg in runs:
        on_start(cfg)
        futures[task.remote(cfg.to_dict(), notebook_text, str(checkpoint_dir) if checkpoint_dir else None,
                            str(data_root) if data_root else None, int(cpus_per_run), git_env)] = cfg
    outcomes = []
    while futures:
        ready, _ = ray.wait(list(futures), num_returns=1)
        cfg = futures.pop(ready[0])
        try:
            outcome, files = ray.get(ready[0])
            if outcome.status == "done":
                _write_record(Path(runs_dir), cfg, files)
        except Exception as err:  # the task itself failed (after Ray's retries)
            outcome = Outcome(str(cfg.run_path()), "failed", f"{type(err).__name__}: {err}"[:500])
        outcomes.append(outcome)
        on_done(outcome)
    return outcomes


def _ray_run(cfg_dict: dict, notebook_text: str, checkpoint_dir: str | None, data_root: str | None,
             threads: int, git_env: dict[str, str]) -> tuple[Outcome, dict[str, str]]:
    """On a Ray worker: run into the node's own folder, hand back the record's files."""
    cfg = RunConfig(**cfg_dict)
    node_dir = Path(os.environ.get("LOSSNB_RAY_DIR", Path(tempfile.gettempdir()) / "lossnb-ray"))
    notebook = node_dir / "benchmark_run.ipynb"
    records.atomic_write_text(notebook, notebook_text)
    env = {"OMP_NUM_THREADS": str(threads), **git_env}
    outcome = execute_run(cfg, node_dir / "runs", checkpoint_dir and Path(checkpoint_dir), data_root and
                          Path(data_root), threads if not torch.cuda.is_available() else None, env, notebook)
    run_dir = node_dir / "runs" / cfg.run_path()
    files = {}
    if outcome.status == "done":
        files = {p.name: base64.b64encode(p.read_bytes()).decode() for p in run_dir.iterdir() if p.is_file()}
    return outcome, files


def _git_env() -> dict[str, str]:
    git = git_commit()
    if git["commit"] is None:
        return {}
    return {"LOSSNB_GIT_COMMIT": git["commit"], "LOSSNB_GIT_DIRTY": "1" if git["dirty"] else "0"}


def _write_record(runs_dir: Path, cfg: RunConfig, files: dict[str, str]) -> None:
    incoming = runs_dir / ".checkpoints" / ".incoming"  # git-ignored, on the same file system as runs/
    incoming.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=incoming))
    for name, data in files.items():
        (staging / name).write_bytes(base64.b64decode(data))
    records.publish_dir(staging, runs_dir / cfg.run_path())


class GridProgress:
    """runs done / total with an ETA, and which runs are under way."""

    def __init__(self, total: int, enabled: bool = True):
        self.bar = tqdm(total=total, desc="grid", unit="run", disable=not enabled)
        self.running: list[str] = []

    def start(self, cfg: RunConfig) -> None:
        self.running.append(_short(str(cfg.run_path())))
        self._show()

    def done(self, outcome: Outcome) -> None:
        short = _short(outcome.run_path)
        if short in self.running:
            self.running.remove(short)
        if outcome.status == "failed":
            self.bar.write(f"failed: {outcome.run_path}: {outcome.reason}")
        self.bar.update(1)
        self._show()

    def _show(self) -> None:
        self.bar.set_postfix_str("running: " + ", ".join(self.running) if self.running else "")

    def close(self) -> None:
        self.bar.close()


def _short(run_path: str) -> str:
    """The run path without its protocol folder (which is the same for the whole grid)."""
    return run_path.split("/", 1)[1]
