"""Which runs of a grid still need work, and how they are packed: finished records and missing data sets are
skipped with the reason; the rest go into packs of compatible runs that are at the same epoch."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ..data import DatasetNotFound, load_dataset
from ..trainer import RunConfig, RunFiles, records

# runs per pack when none is asked for on a GPU, where packing is the way to use it
# (benchmarks/results/trainer_speed_cuda.json); on a CPU the pack size is measured per network (arrangement)
DEFAULT_PACK = {"cpu": 1, "cuda": 12}


@dataclasses.dataclass
class Plan:
    todo: list[RunConfig]
    skipped: list[tuple[str, str]]  # (run path, reason)


def plan_runs(runs: list[RunConfig], runs_dir: Path, data_root: Path | None = None,
              only: dict[str, str] | None = None, retrain_broken: bool = False) -> Plan:
    """The runs still to train; a finished record is skipped, and so is a broken one (named with what is
    wrong) unless ``retrain_broken``: one bad record never stops the others."""
    todo, skipped, missing = [], [], {}
    if only:
        runs = selected(runs, only)
    for cfg in runs:
        path = str(cfg.run_path())
        record = Path(runs_dir) / path
        problem = records.record_problem(record, path) if record.exists() else None
        if record.exists() and not problem:
            try:
                records.check_identity(record, cfg)
                skipped.append((path, "finished record exists"))
            except records.RecordMismatch as err:
                skipped.append((path, str(err)))
            continue
        if problem and not retrain_broken:
            skipped.append((path, f"broken record: {problem}; --retrain-broken trains it again"))
            continue
        if cfg.dataset not in missing:
            missing[cfg.dataset] = _missing_reason(cfg.dataset, data_root)
        if missing[cfg.dataset]:
            skipped.append((path, missing[cfg.dataset]))
            continue
        todo.append(cfg)
    # seed by seed: a grid cut short leaves every loss with the same seeds, ready for paired comparison
    todo.sort(key=lambda cfg: cfg.seed)
    return Plan(todo, skipped)


def selected(runs: list[RunConfig], only: dict[str, str]) -> list[RunConfig]:
    """The runs whose settings match every KEY=VALUE of ``only``; a selection that matches none is refused in one
    line naming what the grid holds, so that a misspelt value never reads as a grid with nothing left to run."""
    for key, value in only.items():
        held = list(dict.fromkeys(str(getattr(cfg, key)) for cfg in runs))
        if value not in held:
            raise ValueError(f"--only {key}={value} matches no run of the grid; its {key} is one of: {', '.join(held)}")
    chosen = [cfg for cfg in runs if all(str(getattr(cfg, k)) == v for k, v in only.items())]
    if not chosen:
        pairs = " ".join(f"{k}={v}" for k, v in only.items())
        raise ValueError(f"--only {pairs}: the grid has each of these, but no run that has them all")
    return chosen


def default_pack_size() -> int:
    return DEFAULT_PACK["cuda" if torch.cuda.is_available() else "cpu"]


def arrangement(cfg: RunConfig, pack: int | None, workers: int | None, measure: bool = True,
                say=print) -> tuple[int, int | None]:
    """(runs per pack, packs at a time) for a grid whose first run is ``cfg``; what is given is kept. On a GPU,
    DEFAULT_PACK and one pack per GPU. On a CPU the rest is measured for this network on this machine (cached;
    lossnb.trainer.probe.best_arrangement) unless ``measure`` is false (a dry run), which takes a cached
    measurement or one run at a time."""
    from ..data import DATASETS, input_channels
    from ..trainer.probe import PACK_SIZES, best_arrangement, cached_arrangement

    for name, value in (("pack size", pack), ("workers", workers)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if torch.cuda.is_available() or cfg.device.startswith("cuda") or (pack and workers):
        return pack or default_pack_size(), workers
    # each pack size is timed in the precision, memory format and first convolution the trainer takes for it (auto:
    # measured per pack)
    shape = (cfg.arch, DATASETS[cfg.dataset]["classes"], input_channels(cfg.dataset, cfg.image_prep), cfg.head,
             cfg.precision, cfg.channels_last)
    sizes = (pack,) if pack else PACK_SIZES
    stored = DATASETS[cfg.dataset]["channels"]  # the channels a step crops (gray images are repeated after)
    how = dict(packs=sizes, compiled=cfg.compile, stored_channels=stored, first_conv=cfg.first_conv)
    choice = best_arrangement(*shape, say=say, **how) if measure else cached_arrangement(*shape, **how)
    if choice is None:
        say("pack size not measured on this machine yet (a dry run does not measure): listed one run a time")
        return pack or 1, workers
    pack, workers = pack or choice["pack"], workers or choice["workers"]
    rate, solo = choice["rates"].get(f"{pack} x {workers}"), choice["rates"].get("1 x 1")
    if rate and solo:
        say(f"packs of {pack}, {workers} at a time: measured on this machine for {cfg.arch}"
            f"{' compiled' if cfg.compile else ''} at {rate:,.0f} img/s, "
            f"{rate / solo:.2f}x one run on all cores")
    return pack, workers


def make_packs(todo: list[RunConfig], pack_size: int, runs_dir: Path,
               checkpoint_dir: Path | None = None) -> list[list[RunConfig]]:
    """Packs of at most ``pack_size`` runs that share everything but loss and seed and whose checkpoints have an
    epoch in common (so an interrupted pack is formed again as it was); in the plan's order, so that the first
    packs hold the first seeds."""
    if not isinstance(pack_size, int) or isinstance(pack_size, bool) or pack_size < 1:
        raise ValueError(f"pack size must be a positive integer, got {pack_size!r}")
    packs: list[tuple[tuple, set, list[RunConfig]]] = []  # (pack key, epochs all members can start from, runs)
    for cfg in todo:
        epochs = RunFiles.of(cfg, runs_dir, checkpoint_dir).checkpoint_epochs() | {0}
        for key, common, members in packs:
            # joining may cost a member at most the one epoch a pack killed mid-checkpoint lost
            if key == cfg.pack_key() and len(members) < pack_size and \
                    max(common & epochs) >= max(max(common), max(epochs)) - 1:
                members.append(cfg)
                common &= epochs
                break
        else:
            packs.append((cfg.pack_key(), epochs, [cfg]))
    return [members for _, _, members in packs]


def _missing_reason(dataset: str, data_root: Path | None) -> str | None:
    try:
        load_dataset(dataset, data_root)
    except DatasetNotFound as err:
        return str(err)
    return None
