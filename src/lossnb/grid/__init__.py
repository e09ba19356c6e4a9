"""Batch runs: a grid of (arch, dataset, loss, seed) at one protocol, trained in packs, resumable."""
from .budget import estimate_pack, fit_packs
from .backends import BACKENDS, GridProgress, run_local, run_ray
from .execute import Outcome, execute_pack, log_path
from .plan import Plan, arrangement, default_pack_size, make_packs, plan_runs
from .spec import Grid, GridError, load_grid, parse_grid

__all__ = ["BACKENDS", "Grid", "GridError", "GridProgress", "Outcome", "Plan", "arrangement", "default_pack_size", "estimate_pack", "execute_pack", "fit_packs",
           "load_grid", "log_path", "make_packs", "parse_grid", "plan_runs", "run_local", "run_ray"]
