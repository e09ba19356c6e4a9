"""Where grid packs execute: local worker processes, or Ray tasks on a cluster."""
from __future__ import annotations

import base64
import os
import shutil
import tempfile
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm  # text bars: tqdm.auto would need ipywidgets (and a CDN) in notebooks

from ..trainer import RunConfig, RunFiles, records
from ..trainer.environment import git_commit
from .execute import Outcome, execute_pack

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


def run_local(packs: list[list[RunConfig]], runs_dir: Path, *, workers: int | None = None,
              checkpoint_dir: Path | None = None, data_root: Path | None = None,
              on_start: Callable = lambda pack: None, on_done: Callable = lambda outcome: None,
              replace_broken: bool = False, keep_checkpoints: bool = False) -> list[Outcome]:
    """Each pack in its own process, ``workers`` packs at a time."""
    slots = local_slots(workers)
    free, outcomes, pending = list(range(len(slots))), [], list(packs)
    with ThreadPoolExecutor(len(slots)) as pool:
        running = {}
        while pending or running:
            while pending and free:
                pack, slot = pending.pop(0), free.pop(0)
                env = slots[slot]
                threads = int(env["OMP_NUM_THREADS"]) if "OMP_NUM_THREADS" in env else None
                on_start(pack)
                running[pool.submit(execute_pack, pack, runs_dir, checkpoint_dir, data_root, threads, env,
                                    replace_broken, keep_checkpoints)] = (pack, slot)
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                pack, slot = running.pop(future)
                free.append(slot)
                try:
                    done = future.result()
                except Exception as err:  # a broken worker fails its pack, never the grid
                    done = [Outcome(str(c.run_path()), "failed", f"{type(err).__name__}: {err}") for c in pack]
                for outcome in done:
                    outcomes.append(outcome)
                    on_done(outcome)
    return outcomes


def run_ray(packs: list[list[RunConfig]], runs_dir: Path, *, address: str | None = None,
            gpus_per_pack: float | None = None, cpus_per_pack: float = 1, checkpoint_dir: Path | None = None,
            data_root: Path | None = None, on_start: Callable = lambda pack: None,
            on_done: Callable = lambda outcome: None) -> list[Outcome]:
    """Each pack is a Ray task (one GPU each where the cluster has GPUs). A task runs on its node's local
    disk and returns its records' files, which are written here into the same runs/; Ray retries a task
    whose worker died, and the retry resumes from the checkpoints if it lands on the same node."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("the ray backend needs Ray: pip install 'lossnb[ray]'") from None
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    if gpus_per_pack is None:
        gpus_per_pack = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    task = ray.remote(num_gpus=gpus_per_pack, num_cpus=cpus_per_pack, max_retries=3)(_ray_pack)
    git_env = _git_env()  # a worker's copy of the code may come without .git
    futures = {}
    for pack in packs:
        on_start(pack)
        futures[task.remote([c.to_dict() for c in pack], str(checkpoint_dir) if checkpoint_dir else None,
                            str(data_root) if data_root else None, int(cpus_per_pack), git_env)] = pack
    outcomes = []
    while futures:
        ready, _ = ray.wait(list(futures), num_returns=1)
        pack = futures.pop(ready[0])
        try:
            results = ray.get(ready[0])
            done = []
            for cfg, (outcome, files) in zip(pack, results):
                if outcome.status == "done" and files:
                    _write_record(Path(runs_dir), cfg, files)
                done.append(outcome)
        except Exception as err:  # the task itself failed (after Ray's retries)
            done = [Outcome(str(c.run_path()), "failed", f"{type(err).__name__}: {err}"[:500]) for c in pack]
        for outcome in done:
            outcomes.append(outcome)
            on_done(outcome)
    return outcomes


def _ray_pack(cfg_dicts: list[dict], checkpoint_dir: str | None, data_root: str | None, threads: int,
              git_env: dict[str, str]) -> list[tuple[Outcome, dict[str, str]]]:
    """On a Ray worker: train into the node's own folder, hand back each finished record's files."""
    cfgs = [RunConfig.from_dict(d) for d in cfg_dicts]
    node_runs = Path(os.environ.get("LOSSNB_RAY_DIR", Path(tempfile.gettempdir()) / "lossnb-ray")) / "runs"
    outcomes = execute_pack(cfgs, node_runs, checkpoint_dir and Path(checkpoint_dir), data_root and Path(data_root),
                            threads if not torch.cuda.is_available() else None, git_env)
    results = []
    for cfg, outcome in zip(cfgs, outcomes):
        run_dir = node_runs / cfg.run_path()
        files = {p.name: base64.b64encode(p.read_bytes()).decode() for p in run_dir.iterdir() if p.is_file()} \
            if outcome.status == "done" else {}
        results.append((outcome, files))
    return results


def _git_env() -> dict[str, str]:
    git = git_commit()
    if git["commit"] is None:
        return {}
    return {"LOSSNB_GIT_COMMIT": git["commit"], "LOSSNB_GIT_DIRTY": "1" if git["dirty"] else "0"}


def _write_record(runs_dir: Path, cfg: RunConfig, files: dict[str, str]) -> None:
    staging = RunFiles.of(cfg, runs_dir).staging  # on the same file system as runs/
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, data in files.items():
        (staging / name).write_bytes(base64.b64decode(data))
    records.publish_dir(staging, runs_dir / cfg.run_path())


class GridProgress:
    """runs done / total with an ETA, and which runs are under way."""

    def __init__(self, total: int, enabled: bool = True):
        self.bar = tqdm(total=total, desc="grid", unit="run", disable=not enabled)
        self.running: list[str] = []

    def start(self, pack: list[RunConfig]) -> None:
        for cfg in pack:
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
        shown = ", ".join(self.running[:4]) + (f" and {len(self.running) - 4} more" if len(self.running) > 4 else "")
        self.bar.set_postfix_str("running: " + shown if self.running else "")

    def close(self) -> None:
        self.bar.close()


def _short(run_path: str) -> str:
    """The run path without its protocol folder (which is the same for the whole grid)."""
    return run_path.split("/", 1)[1]
