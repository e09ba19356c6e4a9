"""The ``lossnb`` command: a thin layer over the library."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml


def parse_params(pairs: list[str]) -> dict:
    """['gamma=2', 'epsilons=[1, 0.5]'] -> {'gamma': 2, 'epsilons': [1, 0.5]} (values read as YAML)."""
    params = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--loss-param expects KEY=VALUE, got {pair!r}")
        params[key.strip()] = yaml.safe_load(value)
    return params


def _train(args) -> int:
    from .trainer import RunConfig, RunExists, train

    cfg = RunConfig(arch=args.arch, dataset=args.dataset, loss=args.loss, seed=args.seed,
                    loss_params=parse_params(args.loss_param), epochs=args.epochs, batch_size=args.batch_size,
                    lr=args.lr, train_subset=args.train_subset, val_size=args.val_size, protocol=args.protocol,
                    precision=args.precision, channels_last=args.channels_last, compile=args.compile,
                    device=args.device)
    try:
        summary = train(cfg, runs_dir=args.runs_dir, checkpoint_dir=args.checkpoint_dir, data_root=args.data_root,
                        download=args.download, resume=args.resume, force=args.force, progress=not args.no_progress)
    except RunExists as e:
        print(f"lossnb train: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"run": str(Path(args.runs_dir) / cfg.run_path()), **summary}, indent=2))
    return 0 if summary["status"] == "complete" else 3


def _losses(args) -> int:
    from . import losses

    if args.name:
        print(json.dumps(losses.describe(args.name), indent=2))
    else:
        for name in losses.available():
            print(f"{name:<20} {losses.describe(name)['summary']}")
    return 0


def _export(args) -> int:
    from . import losses

    source = losses.export_source(args.name, **parse_params(args.loss_param))
    if args.output:
        Path(args.output).write_text(source)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(source, end="")
    return 0


def _grid(args) -> int:
    from . import grid

    spec = grid.load_grid(args.file)
    only = parse_only(args.only)
    plan = grid.plan_runs(spec.runs, Path(args.runs_dir), args.data_root, only)
    print(f"{spec.protocol}: {len(spec.runs)} runs in the grid, {len(plan.todo)} to run, "
          f"{len(plan.skipped)} skipped", file=sys.stderr)
    if args.dry_run:
        for cfg in plan.todo:
            print(f"todo     {cfg.run_path()}")
        for path, reason in plan.skipped:
            print(f"skipped  {path}: {reason}")
        return 0
    progress = grid.GridProgress(len(plan.todo), enabled=not args.no_progress)
    common = dict(checkpoint_dir=args.checkpoint_dir, data_root=args.data_root, notebook=Path(args.notebook or grid.NOTEBOOK),
                  on_start=progress.start, on_done=progress.done)
    try:
        if args.backend == "ray":
            outcomes = grid.run_ray(plan.todo, Path(args.runs_dir), address=args.address, **common)
        else:
            outcomes = grid.run_local(plan.todo, Path(args.runs_dir), workers=args.workers, **common)
    finally:
        progress.close()
    _print_grid_summary(outcomes, plan.skipped)
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def _book(args) -> int:
    from .book import build_book

    html = build_book(args.root, quick=args.quick, execute=not args.no_execute)
    print(f"book built: {html / 'index.html'}")
    return 0


def parse_only(pairs: list[str] | None) -> dict[str, str]:
    keys = ("arch", "dataset", "loss", "seed")
    only = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or key not in keys:
            raise ValueError(f"--only expects KEY=VALUE with KEY one of: {', '.join(keys)}; got {pair!r}")
        only[key] = value
    return only


def _print_grid_summary(outcomes, skipped) -> None:
    done = [o for o in outcomes if o.status == "done"]
    failed = [o for o in outcomes if o.status == "failed"]
    skipped = list(skipped) + [(o.run_path, o.reason) for o in outcomes if o.status == "busy"]
    print(f"done: {len(done)}  failed: {len(failed)}  skipped: {len(skipped)}")
    for o in failed:
        print(f"  failed   {o.run_path}: {o.reason}")
    reasons = {}
    for _, reason in skipped:
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in reasons.items():
        print(f"  skipped  {count} run(s): {reason}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lossnb", description="Classification-loss studies: train, list, export.")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one (arch, dataset, loss, seed) run and write its record")
    t.add_argument("--arch", required=True)
    t.add_argument("--dataset", required=True)
    t.add_argument("--loss", required=True)
    t.add_argument("--loss-param", action="append", metavar="KEY=VALUE", help="loss hyperparameter (repeatable)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=200)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=0.1)
    t.add_argument("--train-subset", type=int, default=None, help="train on a fixed random subset of N images")
    t.add_argument("--val-size", type=int, default=None, help="evaluate on N held-out training images, not test")
    t.add_argument("--protocol", default="bench", help="protocol name, first part of the run directory")
    t.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    t.add_argument("--channels-last", default="auto", choices=["auto", "on", "off"])
    t.add_argument("--compile", action="store_true", help="torch.compile the model")
    t.add_argument("--device", default="auto")
    t.add_argument("--runs-dir", default="runs")
    t.add_argument("--checkpoint-dir", default=None, help="default: RUNS_DIR/.checkpoints (git-ignored)")
    t.add_argument("--data-root", default=None, help="default: $LOSSNB_DATA or ./data")
    t.add_argument("--download", action="store_true", help="let torchvision download the data set")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    t.add_argument("--force", action="store_true", help="start over even if the run finished or has a checkpoint")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=_train)

    ls = sub.add_parser("losses", help="list the losses, or describe one")
    ls.add_argument("name", nargs="?")
    ls.set_defaults(func=_losses)

    ex = sub.add_parser("export-loss", help="write a standalone compute_loss for the benchmark's custom_loss.py")
    ex.add_argument("name")
    ex.add_argument("--loss-param", action="append", metavar="KEY=VALUE")
    ex.add_argument("-o", "--output", help="file to write (default: stdout)")
    ex.set_defaults(func=_export)

    g = sub.add_parser("grid", help="run every unfinished run of a grid file through the benchmark-run notebook")
    g.add_argument("file", help="grid file (YAML), e.g. grids/report-convnet.yaml")
    g.add_argument("--backend", default="local", choices=["local", "ray"])
    g.add_argument("--workers", type=int, default=None, help="local: parallel runs (default: one per GPU, else 1)")
    g.add_argument("--address", default=None, help="ray: cluster address (default: start a local Ray)")
    g.add_argument("--only", action="append", metavar="KEY=VALUE", help="restrict to arch/dataset/loss/seed")
    g.add_argument("--runs-dir", default="runs")
    g.add_argument("--checkpoint-dir", default=None, help="default: RUNS_DIR/.checkpoints (git-ignored)")
    g.add_argument("--data-root", default=None, help="default: $LOSSNB_DATA or ./data")
    g.add_argument("--notebook", default=None, help="the benchmark-run notebook (default: notebooks/benchmark_run.ipynb)")
    g.add_argument("--dry-run", action="store_true", help="list what would run and what is skipped, run nothing")
    g.add_argument("--no-progress", action="store_true")
    g.set_defaults(func=_grid)

    b = sub.add_parser("book", help="execute the study notebooks with papermill and build the book (-W)")
    b.add_argument("--root", default=".", help="the book root (the repository)")
    b.add_argument("--quick", action="store_true", help="small parameters (for tests)")
    b.add_argument("--no-execute", action="store_true", help="build from the executed notebooks already there")
    b.set_defaults(func=_book)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:  # bad names and values: one clear line, no traceback
        print(f"lossnb {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
