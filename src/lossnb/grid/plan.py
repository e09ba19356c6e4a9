"""Which runs of a grid still need work: finished records and missing data sets are skipped, with the reason."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..data import DatasetNotFound, load_dataset
from ..trainer import RunConfig, records


@dataclasses.dataclass
class Plan:
    todo: list[RunConfig]
    skipped: list[tuple[str, str]]  # (run path, reason)


def plan_runs(runs: list[RunConfig], runs_dir: Path, data_root: Path | None = None,
              only: dict[str, str] | None = None) -> Plan:
    todo, skipped, missing = [], [], {}
    for cfg in runs:
        if only and any(str(getattr(cfg, k)) != v for k, v in only.items()):
            continue
        path = str(cfg.run_path())
        if records.is_finished(Path(runs_dir) / path):
            skipped.append((path, "finished record exists"))
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


def _missing_reason(dataset: str, data_root: Path | None) -> str | None:
    try:
        load_dataset(dataset, data_root)
    except DatasetNotFound as err:
        return str(err)
    return None
