"""The epoch driver: train runs (alone or as one pack) under the benchmark's protocol, resumable per run from
their checkpoints, each ending in a record of its own. The pack's state and step are in trainer.state."""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from tqdm import tqdm  # text bars: tqdm.auto would need ipywidgets (and a CDN) in notebooks

from .. import losses
from ..data import ImageData, load_dataset
from . import records
from .config import RunConfig
from .environment import resolve_device, run_execution
from .metrics import evaluation_metrics, reliability_bins
from .probe import candidate_name
from .state import LossFailed, PackRun
from .workspace import RunBusy, RunFiles, holder_pid, run_locks

LOSS_FILE_COPY = "loss_file.py"  # a run with a loss file keeps a copy of it in its record


class RunExists(RuntimeError):
    pass


# ---------------------------------------------------------------- the entry points
def train(cfg: RunConfig, **kwargs) -> dict:
    """Train one run and write its record; returns its summary. See train_pack."""
    summaries = train_pack([cfg], **kwargs)
    if summaries[0] is None:
        files = RunFiles.of(cfg, kwargs.get("runs_dir", "runs"))
        raise RunBusy(f"{cfg.run_path()} is being trained by another process (pid {holder_pid(files.lock)})")
    return summaries[0]


def train_pack(cfgs: list[RunConfig], *, runs_dir: str | Path = "runs", checkpoint_dir: str | Path | None = None,
               data_root: str | Path | None = None, download: bool = False, resume: bool = False,
               force: bool = False, progress: bool = True, data: ImageData | None = None,
               replace_broken: bool = False, keep_checkpoints: bool = False) -> list[dict | None]:
    """Train K runs of one architecture and data set as one pack; returns each run's summary (None for a run
    another process holds).

    A finished run is left alone (its summary returned) unless ``force``; a broken record (see
    records.record_problem) is an error unless ``force`` or ``replace_broken``, which retrain it. A run with a checkpoint continues
    from it with ``resume`` and is refused without it, so that no work is lost by accident. A member whose
    loss turns non-finite is recorded 'diverged' (with epoch and step) and frozen; the others go on. Once a
    run's record is whole its checkpoints are removed, unless ``keep_checkpoints`` (they hold its final weights).
    """
    _check_packable(cfgs)
    files = [RunFiles.of(c, runs_dir, checkpoint_dir) for c in cfgs]
    try:
        summaries = _train_locked(cfgs, files, data_root, download, resume, force, progress, data, replace_broken)
    finally:  # a run refused or failed leaves no empty folder in runs/
        for f in files:
            f.remove_empty_folders()
    if not keep_checkpoints:
        for f, summary in zip(files, summaries):
            if summary and summary.get("status") in records.FINISHED:
                f.remove_checkpoints()
    return summaries


def _train_locked(cfgs, files, data_root, download, resume, force, progress, data, replace_broken):
    for f in files:
        f.check_same_file_system()
    with run_locks(files) as held:
        summaries: list[dict | None] = [None] * len(cfgs)
        todo = []
        for i, (cfg, f, mine) in enumerate(zip(cfgs, files, held)):
            if not mine:
                continue
            problem = records.record_problem(f.record, str(cfg.run_path())) if f.record.exists() else None
            if f.record.exists() and not problem and not force:
                records.check_identity(f.record, cfg)
                summaries[i] = records.read_summary(f.record)
                continue
            if problem and not (force or replace_broken):  # never overwritten without being asked
                raise records.RecordBroken(f"{problem}; retrain the run with --force (or a grid with "
                                           "--retrain-broken), or move the record away")
            todo.append(i)
        if todo:
            done = _train_members([cfgs[i] for i in todo], [files[i] for i in todo], data_root, download, resume,
                                  force, progress, data)
            for i, summary in zip(todo, done):
                summaries[i] = summary
        return summaries


def _check_packable(cfgs: list[RunConfig]) -> None:
    if not cfgs:
        raise ValueError("no run to train")
    for c in cfgs[1:]:
        if c.pack_key() != cfgs[0].pack_key():
            diff = [k for k, v in c.to_dict().items() if k not in ("loss", "loss_params", "seed")
                    and v != getattr(cfgs[0], k)]
            raise ValueError(f"{c.run_path()} cannot share a pack with {cfgs[0].run_path()}: {', '.join(diff)} differ")
    paths = [str(c.run_path()) for c in cfgs]
    if len(set(paths)) != len(paths):
        raise ValueError(f"a pack names the same run twice: {paths}")


def _train_members(cfgs, files, data_root, download, resume, force, progress, data) -> list[dict]:
    for f in files:
        if force:
            f.prune_checkpoints(keep_from=10**9)
        elif f.checkpoint_epochs() and not resume:
            raise RunExists(f"{f.record} has a checkpoint (in {f.checkpoints}); pass --resume to continue it or "
                            "--force to restart")
    epoch, starts, dropped = resume_point(files) if resume else (0, [None] * len(files), [])
    if dropped:  # their checkpoints are gone: they start afresh in a later pack, the others go on now
        keep = [k for k in range(len(cfgs)) if k not in dropped]
        done = _train_members([cfgs[k] for k in keep], [files[k] for k in keep], data_root, download, resume,
                              force, progress, data)
        summaries = [None] * len(cfgs)
        for k, summary in zip(keep, done):
            summaries[k] = summary
        return summaries
    device = resolve_device(cfgs[0].device)
    cfg = cfgs[0]
    data = data or load_dataset(cfg.dataset, data_root, download=download, train_subset=cfg.train_subset,
                                val_size=cfg.val_size, prep=cfg.image_prep)
    run = PackRun(cfgs, data, device, resumed_execution(cfgs, starts, device, data))
    for k, state in enumerate(starts):
        if state:
            try:
                run.restore_member(k, state)
            except (ValueError, RuntimeError) as err:  # a checkpoint of another model or shape
                raise ValueError(f"checkpoint {files[k].checkpoint(epoch)} does not fit {cfgs[k].run_path()} "
                                 f"({str(err).splitlines()[0][:200]}); delete it or pass --force to restart the "
                                 "run") from None
    if epoch:
        print(f"resuming {len(cfgs)} run(s) from their checkpoints after epoch {epoch}", file=sys.stderr)
    for k, f in enumerate(files):
        records.start_staging(f.staging, records.config_of(run, k), run.rows[k])
        if run.losses[k].spec.source_file:  # the code behind the numbers, in the record
            losses.files.copy_verified(run.losses[k].spec.source_file, f.staging / LOSS_FILE_COPY)
    try:
        return _epochs(run, files, progress)
    except LossFailed as err:  # the failing run leaves nothing behind; its pack-mates keep their checkpoints
        failed = files[cfgs.index(err.cfg)]
        shutil.rmtree(failed.staging, ignore_errors=True)
        failed.prune_checkpoints(keep_from=10**9)
        raise


def resumed_execution(cfgs: list[RunConfig], starts: list[dict | None], device, data) -> dict | None:
    """The precision, memory format and first convolution resumed runs began in, so that a run never changes them
    mid-way (None: a fresh start, resolved anew). Checkpoints that do not record it were resolved by the solo
    probe; those that do not record the first convolution began grouped."""
    begun = [state.get("execution") for state in starts if state]
    if not begun:
        return None
    if None in begun:  # written before executions were recorded: `auto` then resolved as for one run
        return run_execution(cfgs[0], data, device)
    settings = sorted({candidate_name(e["precision"], e["channels_last"], e.get("first_conv", "grouped"))
                       for e in begun})
    if len(settings) > 1:
        raise ValueError(f"{cfgs[0].run_path()} and its pack-mates began in different settings "
                         f"({', '.join(settings)}); train them in separate packs")
    return begun[0]


def resume_point(files: list[RunFiles]) -> tuple[int, list[dict | None], list[int]]:
    """(epoch, each member's state at it, members dropped). The latest epoch at which every member's
    checkpoint loads: a damaged latest one falls back to the member's previous kept epoch (for the whole pack,
    whose members move together). A member none of whose checkpoints loads is dropped, named, and its
    checkpoints removed, so that it starts afresh later and its pack-mates go on; a run alone is refused."""
    loaded: list[dict[int, dict]] = []
    for f in files:
        states = {}
        for epoch in sorted(f.checkpoint_epochs(), reverse=True):
            try:
                states[epoch] = records.load_checkpoint(f.checkpoint(epoch))
            except ValueError as err:
                print(f"{str(err).split(';')[0]}: falling back to an earlier checkpoint", file=sys.stderr)
        loaded.append(states)
    dropped = [k for k, f in enumerate(files) if f.checkpoint_epochs() and not loaded[k]]
    if dropped and len(dropped) == len(files):
        raise ValueError(f"no checkpoint of {files[0].record} can be read (in {files[0].checkpoints}); delete them "
                         "or pass --force to restart the run")
    for k in dropped:
        print(f"no checkpoint of {files[k].record} can be read: removed; the run starts afresh next time",
              file=sys.stderr)
        files[k].prune_checkpoints(keep_from=10**9)
    if dropped:
        return 0, [], dropped
    epoch = common_checkpoint_epoch(files, [set(states) for states in loaded])
    return epoch, [loaded[k].get(epoch) if epoch else None for k in range(len(files))], []


def common_checkpoint_epoch(files: list[RunFiles], usable: list[set[int]] | None = None) -> int:
    """The latest epoch every run of the pack has a checkpoint of (0: from the start). A pack killed while
    writing its members' checkpoints resumes one epoch back; anything more would discard work, and is refused."""
    have = [epochs | {0} for epochs in (usable or [f.checkpoint_epochs() for f in files])]
    common = max(set.intersection(*have))
    latest = max(max(h) for h in have)
    if common < latest - 1:
        raise ValueError(f"these runs cannot resume as one pack: they have no checkpoint epoch in common near "
                         f"their latest ({latest}); train them in packs of runs at the same epoch")
    return common


def _epochs(run: PackRun, files: list[RunFiles], progress: bool) -> list[dict]:
    summaries: list[dict | None] = [None] * run.k
    first, total = len(run.rows[0]), run.cfgs[0].epochs
    label = str(run.cfgs[0].run_path()) if run.k == 1 else f"pack of {run.k}: {run.cfgs[0].run_path().parts[1]}"
    bar = tqdm(range(first, total), desc=label, initial=first, total=total, disable=not progress)
    for epoch in bar:
        started = time.perf_counter()
        train_metrics = run.train_epoch(epoch, progress)
        first_bad = run.first_bad.tolist()
        logits = run.test_logits()
        seconds = time.perf_counter() - started
        run.wall_seconds += seconds
        for k in range(run.k):
            if not run.alive[k]:
                continue
            if first_bad[k] >= 0:
                summaries[k] = _finish(run, k, files[k], "diverged", (epoch, first_bad[k]))
                run.freeze(k)
                continue
            run.reliability[k] = reliability_bins(logits[k], run.test_y)
            row = {"epoch": epoch, **train_metrics[k], **evaluation_metrics(logits[k], run.test_y,
                                                                             run.data.num_classes),
                   "epoch_seconds": seconds, "train_images_per_second": len(run.train_y) / seconds}
            run.rows[k].append(row)
            records.write_metrics(files[k].staging / "metrics.csv", run.rows[k])
            records.atomic_torch_save(run.member_state(k), files[k].checkpoint(epoch + 1))
        for k in range(run.k):  # only once every member has this epoch's: the two last stay
            files[k].prune_checkpoints(keep_from=epoch)
        alive = [k for k in range(run.k) if run.alive[k]]
        if not alive:
            break
        best = max(max(r["test_acc"] for r in run.rows[k]) for k in alive)
        bar.set_postfix(best_test_acc=f"{best:.4f}", running=len(alive))
    if None in summaries:
        fit = run.fit_metrics()
        for k in range(run.k):
            if summaries[k] is None:
                summaries[k] = _finish(run, k, files[k], "complete", fit=fit[k])
    return summaries


def _finish(run: PackRun, k: int, f: RunFiles, status: str, diverged_at=None, fit: dict | None = None) -> dict:
    summary = {**records.summary_of(run, k, status, diverged_at), **(fit or {})}
    records.write_json(f.staging / "config.json", records.config_of(run, k))  # as it ended (graphs may have gone)
    records.write_json(f.staging / "summary.json", summary)
    records.publish_dir(f.staging, f.record)
    return summary
