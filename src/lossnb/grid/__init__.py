"""Batch runs: a grid of (arch, dataset, loss, seed) at one protocol, executed with papermill, resumable."""
from .backends import BACKENDS, GridProgress, run_local, run_ray
from .execute import NOTEBOOK, Outcome, execute_run
from .plan import Plan, plan_runs
from .spec import Grid, GridError, load_grid, parse_grid

__all__ = ["BACKENDS", "NOTEBOOK", "Grid", "GridError", "GridProgress", "Outcome", "Plan", "execute_run",
           "load_grid", "parse_grid", "plan_runs", "run_local", "run_ray"]
