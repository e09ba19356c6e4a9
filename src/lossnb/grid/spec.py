"""Grid files: a protocol and the axes of a study, expanded into run configurations.

```yaml
protocol: report-convnet          # names the runs' top folder, with the budget
description: ...                  # free text, shown in the book
budget: {epochs: 15}              # RunConfig fields shared by every run (epochs, train_subset, lr, ...)
tasks:                            # (arch, dataset) pairs
  - {arch: convnet, dataset: fashionmnist}
losses:                           # a name, or a name with params and, optionally, its own seeds
  - ce
  - {name: focal, params: {gamma: 0.5}}
  - {name: gce, params: {q: 0.7}, seeds: [0, 1, 2]}
  - {name: arcface, head: cosine}  # a loss on a cosine classifier head (the angular-margin losses need one)
  - my_losses/custom_loss.py      # a loss file (relative to this grid file), or my_losses/file.py:function
seeds: [0, 1, 2, 3, 4]
```
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from ..losses import is_loss_file
from ..trainer import RunConfig
from ..yaml_errors import one_line

TOP_KEYS = ("protocol", "description", "budget", "tasks", "losses", "seeds")
REQUIRED_KEYS = ("protocol", "tasks", "losses", "seeds")
TASK_KEYS = ("arch", "dataset")
LOSS_KEYS = ("name", "params", "seeds", "head")
# what a grid may set for every run; the axes (arch, dataset, loss, seed) and the protocol come from their own keys
BUDGET_KEYS = tuple(f.name for f in dataclasses.fields(RunConfig)
                    if f.name not in ("arch", "dataset", "loss", "loss_params", "seed", "protocol", "head"))


class GridError(ValueError):
    pass


@dataclasses.dataclass
class Grid:
    protocol: str
    description: str
    budget: dict[str, Any]
    runs: list[RunConfig]
    source: str


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently)."""


def _mapping_without_duplicates(loader, node, deep=False):
    keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
    twice = next((i for i, k in enumerate(keys) if k in keys[:i]), None)
    if twice is not None:  # at the second one's place, where the reader must look
        raise yaml.constructor.ConstructorError(None, None, f"key {keys[twice]!r} is given twice",
                                                node.value[twice][0].start_mark)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_grid(path: str | Path) -> Grid:
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise GridError(f"grid file {str(path)!r} not found") from None
    except yaml.YAMLError as err:
        raise GridError(f"{path}: not valid YAML ({one_line(err)})") from None
    return parse_grid(raw, source=str(path))


def parse_grid(raw: Any, source: str = "<grid>") -> Grid:
    """Validate a whole grid before anything runs; every error names the key and what is allowed."""
    where = f"{source}:"
    _check_mapping(raw, TOP_KEYS, where, "the grid")
    for key in REQUIRED_KEYS:
        if key not in raw:
            raise GridError(f"{where} missing key {key!r} (required: {', '.join(REQUIRED_KEYS)})")
    budget = raw.get("budget") or {}
    _check_mapping(budget, BUDGET_KEYS, where, "budget")
    seeds = _seeds(raw["seeds"], f"{where} seeds")
    tasks = _list(raw["tasks"], f"{where} tasks")
    losses = _list(raw["losses"], f"{where} losses")
    runs = []
    for i, task in enumerate(tasks):
        _check_mapping(task, TASK_KEYS, where, f"tasks[{i}]")
        missing = [k for k in TASK_KEYS if k not in task]
        if missing:
            raise GridError(f"{where} tasks[{i}] is missing {', '.join(map(repr, missing))}")
        for j, entry in enumerate(losses):
            name, params, loss_seeds = _loss_entry(entry, f"{where} losses[{j}]", seeds, Path(source).parent)
            head = entry.get("head", "linear") if isinstance(entry, dict) else "linear"
            for seed in loss_seeds:
                try:
                    runs.append(RunConfig(arch=task["arch"], dataset=task["dataset"], loss=name, loss_params=params,
                                          head=head, seed=seed, protocol=raw["protocol"], **budget))
                except (TypeError, ValueError) as err:
                    raise GridError(f"{where} tasks[{i}] x losses[{j}]: {err}") from None
    paths = [str(r.run_path()) for r in runs]
    duplicates = sorted({p for p in paths if paths.count(p) > 1})
    if duplicates:
        raise GridError(f"{where} the grid names the same run twice: {duplicates[0]}")
    return Grid(raw["protocol"], raw.get("description", ""), budget, runs, source)


def _check_mapping(value: Any, allowed: tuple[str, ...], where: str, what: str) -> None:
    if not isinstance(value, dict):
        raise GridError(f"{where} {what} must be a mapping, got {type(value).__name__}")
    for key in value:
        if key not in allowed:
            raise GridError(f"{where} unknown key {key!r} in {what}; allowed: {', '.join(allowed)}")


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list) or not value:
        raise GridError(f"{where} must be a non-empty list")
    return value


def _seeds(value: Any, where: str) -> list[int]:
    seeds = _list(value, where)
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise GridError(f"{where} must be distinct non-negative integers, got {seeds!r}")
    return seeds


def _loss_entry(entry: Any, where: str, default_seeds: list[int], base: Path) -> tuple[str, dict, list[int]]:
    if isinstance(entry, str):
        return _loss_name(entry, base), {}, default_seeds
    _check_mapping(entry, LOSS_KEYS, where, "a loss entry")
    if "name" not in entry:
        raise GridError(f"{where} needs a 'name'")
    params = entry.get("params") or {}
    if not isinstance(params, dict):
        raise GridError(f"{where} params must be a mapping, got {params!r}")
    seeds = _seeds(entry["seeds"], f"{where} seeds") if "seeds" in entry else default_seeds
    return _loss_name(entry["name"], base), params, seeds


def _loss_name(name: Any, base: Path) -> Any:
    """A loss file named in a grid is relative to the grid file's folder."""
    if is_loss_file(name) and not Path(name.split(".py:")[0]).is_absolute():
        return str(base / name)
    return name
