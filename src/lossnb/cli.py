"""The ``lossnb`` command: a thin layer over the library."""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import signal
import sys
from pathlib import Path

import yaml

from .yaml_errors import one_line


def parse_params(pairs: list[str]) -> dict:
    """['gamma=2', 'epsilons=[1, 0.5]'] -> {'gamma': 2, 'epsilons': [1, 0.5]} (values read as YAML)."""
    params = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--loss-param expects KEY=VALUE, got {pair!r}")
        try:
            params[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ValueError(f"--loss-param {pair!r}: the value is not valid YAML ({one_line(err)})") from None
    return params


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field, with its type, choices and help from the field itself."""
    from .trainer.config import RunConfig, field_type

    for field in dataclasses.fields(RunConfig):
        if field.name == "loss_params":
            parser.add_argument("--loss-param", action="append", metavar="KEY=VALUE", default=argparse.SUPPRESS,
                                help="loss hyperparameter (repeatable)")
            continue
        flag, kind = "--" + field.name.replace("_", "-"), field_type(field)[0]
        meta = field.metadata
        default = "" if field.default is dataclasses.MISSING else f" (default: {field.default})"
        if field.name == "arch":  # the networks, named where one is chosen
            from .models import available_models

            default = ": " + ", ".join(available_models())
        if kind is bool:
            parser.add_argument(flag, dest=field.name, action="store_true", default=argparse.SUPPRESS,
                                help=meta["help"])
        else:
            parser.add_argument(flag, dest=field.name, type=kind, choices=meta["choices"], default=argparse.SUPPRESS,
                                help=meta["help"] + default)


def run_configs(args) -> list:
    """The run(s) named by --config FILE (one serialized RunConfig, or a list: a pack) and/or the run flags."""
    from .trainer import RunConfig
    from .trainer.config import field_names

    given = {k: getattr(args, k) for k in field_names() if hasattr(args, k)}
    if hasattr(args, "loss_param"):
        given["loss_params"] = parse_params(args.loss_param)
    if not args.config:
        missing = [f"--{k}" for k in ("arch", "dataset", "loss") if k not in given]
        if missing:
            raise ValueError(f"the run needs {', '.join(missing)} (or --config FILE)")
        return [RunConfig.from_dict(given)]
    try:
        raw = json.loads(Path(args.config).read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"--config {args.config}: cannot read it as JSON ({err})") from None
    items = raw if isinstance(raw, list) else [raw]
    bad = next((item for item in items if not isinstance(item, dict)), None)
    if bad is not None or not items:
        raise ValueError(f"--config {args.config}: a run's settings (a JSON object) or a list of them, not {bad!r}")
    return [RunConfig.from_dict({**item, **given}) for item in items]


def _train(args) -> int:
    from .trainer import RunBusy, RunExists, train_pack

    cfgs = run_configs(args)
    try:
        summaries = train_pack(cfgs, runs_dir=args.runs_dir, checkpoint_dir=args.checkpoint_dir,
                               data_root=args.data_root, download=args.download, resume=args.resume,
                               force=args.force, progress=not args.no_progress,
                               replace_broken=args.replace_broken, keep_checkpoints=args.keep_checkpoints)
    except (RunExists, RunBusy) as e:
        print(f"lossnb train: {e}", file=sys.stderr)
        return 2
    report = [{"run": str(Path(args.runs_dir) / c.run_path()), **(s or {"status": "busy"})}
              for c, s in zip(cfgs, summaries)]
    if args.verbose:
        print(json.dumps(report[0] if len(report) == 1 else report, indent=2))
    else:
        for r in report:
            print(_one_line_summary(r))
    if args.keep_checkpoints:
        from .trainer.workspace import RunFiles

        for c in cfgs:
            print(f"checkpoints kept in {RunFiles.of(c, args.runs_dir, args.checkpoint_dir).checkpoints} "
                  "(the last epoch's holds the final weights; delete the folder when done)")
    statuses = {r["status"] for r in report}
    if "busy" in statuses:
        print("lossnb train: another process is training " + ", ".join(r["run"] for r in report
                                                                        if r["status"] == "busy"), file=sys.stderr)
        from .trainer.workspace import BUSY_EXIT

        return BUSY_EXIT
    return 0 if statuses == {"complete"} else 3


KEEP_HELP = ("keep a run's checkpoints (its last two epochs' weights and optimizer state) once its record is whole; "
             "by default they are removed then")


def _one_line_summary(r: dict) -> str:
    """A run's outcome in a line: its status, accuracies, fit and time, and where its whole summary is."""
    if r.get("best_test_acc") is None:
        return f"{r['run']}: {r['status']}"
    split = r.get("eval_split", "test")
    parts = [f"{r['status']}", f"best {split} accuracy {r['best_test_acc']:.4f} (epoch {r['best_epoch'] + 1})",
             f"final {r['final_test_acc']:.4f}"]
    if r.get("train_eval_acc") is not None:
        parts.append(f"un-augmented training accuracy {r['train_eval_acc']:.4f}")
    if r.get("diverged_at"):
        parts.append(f"diverged at epoch {r['diverged_at']['epoch'] + 1}, step {r['diverged_at']['step'] + 1}")
    parts.append(f"{r['wall_seconds']:.0f} s")
    return f"{r['run']}: " + ", ".join(parts) + " (summary.json there; --verbose prints it)"


def _losses(args) -> int:
    from . import losses

    if args.name == "check":
        if not args.target:
            raise ValueError("lossnb losses check needs a loss: a file (path/custom_loss.py[:function]) or a name")
        from .losses.check import check_loss

        results = check_loss(args.target)
        for r in results:
            print(f"{'PASS' if r.passed else 'FAIL'}  {r.name:<26} {r.detail}")
        failed = [r.name for r in results if not r.passed]
        print(f"verdict: {'meets the loss contract' if not failed else 'fails: ' + ', '.join(failed)}")
        return 0 if not failed else 1
    if args.name:
        print(json.dumps(losses.describe(args.name), indent=2))
    else:
        width = max(60, shutil.get_terminal_size((100, 24)).columns)
        for name in losses.available():
            first = losses.describe(name)["summary"].split(". ")[0].rstrip(".")
            line = f"{name:<20} {first}"
            print(line if len(line) <= width else line[:width - 1] + "…")
        print("lossnb losses NAME: a loss's paper, formula and hyperparameters")
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
    plan = grid.plan_runs(spec.runs, Path(args.runs_dir), args.data_root, only, retrain_broken=args.retrain_broken)
    if args.time_budget is not None and not (math.isfinite(args.time_budget) and args.time_budget > 0):
        raise ValueError(f"--time-budget={args.time_budget}; it must be a positive number of minutes")
    pack_size, workers = args.pack, args.workers
    if plan.todo and args.backend == "local":  # on a CPU, what is not given is measured for the first run's network
        pack_size, workers = grid.arrangement(plan.todo[0], pack_size, workers, measure=not args.dry_run,
                                              say=lambda line: print(line, file=sys.stderr))
    pack_size = pack_size or grid.default_pack_size()
    packs = grid.make_packs(plan.todo, pack_size, Path(args.runs_dir), args.checkpoint_dir)
    if args.time_budget is not None and packs and not args.dry_run:
        from .trainer import RunFiles
        from .trainer.loop import common_checkpoint_epoch

        done = [common_checkpoint_epoch([RunFiles.of(c, args.runs_dir, args.checkpoint_dir) for c in pack])
                for pack in packs]
        packs = grid.fit_packs(packs, args.time_budget * 60, args.data_root, starting_epochs=done,
                               say=lambda line: print(line, file=sys.stderr), partial=args.partial)
        plan.todo = [c for pack in packs for c in pack]
    print(f"{spec.protocol}: {len(spec.runs)} runs in the grid, {len(plan.todo)} to run in {len(packs)} pack(s) "
          f"of at most {pack_size}, {len(plan.skipped)} skipped", file=sys.stderr)
    if args.dry_run:
        for i, pack in enumerate(packs):
            for cfg in pack:
                print(f"todo     pack {i + 1}: {cfg.run_path()}")
        for path, reason in plan.skipped:
            print(f"skipped  {path}: {reason}")
        return 0
    progress = grid.GridProgress(len(plan.todo), enabled=not args.no_progress)
    finished = []  # what ended before an interruption, for its summary
    common = dict(checkpoint_dir=args.checkpoint_dir, data_root=args.data_root, on_start=progress.start,
                  on_done=lambda outcome: (finished.append(outcome), progress.done(outcome)))
    previous = signal.signal(signal.SIGTERM, _stop_grid)
    try:
        if args.backend == "ray":
            outcomes = grid.run_ray(packs, Path(args.runs_dir), address=args.address, **common)
        else:
            outcomes = grid.run_local(packs, Path(args.runs_dir), workers=workers, replace_broken=args.retrain_broken,
                                      keep_checkpoints=args.keep_checkpoints, **common)
    except KeyboardInterrupt:
        progress.close()
        _print_grid_summary(finished, plan.skipped)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        progress.close()
    _print_grid_summary(outcomes, plan.skipped)
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def _stop_grid(signum, frame) -> None:
    """SIGTERM to the grid: stop its packs (they keep their checkpoints), then end as Ctrl-C does, with the
    summary of what finished and every temporary file removed."""
    from .grid.execute import stop_children

    stop_children()
    raise KeyboardInterrupt


def _book(args) -> int:
    from .book import ChapterFailed, build_book

    try:
        html = build_book(args.root, quick=args.quick, execute=not args.no_execute)
    except ChapterFailed as err:
        print(f"lossnb book: {err}", file=sys.stderr)
        return 1
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


def build_parser(run_flags: bool = True) -> argparse.ArgumentParser:
    """The command line; ``run_flags`` false leaves out train's per-setting flags, which need torch (for a
    command other than train, and for `lossnb --help`, which then answers at once)."""
    parser = argparse.ArgumentParser(prog="lossnb", description="Classification-loss studies: train, list, export.")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one run (or a pack of runs from --config) and write its record")
    t.add_argument("--config", default=None, help="JSON file: one run's settings, or a list of them (trained as one "
                                                  "pack); flags given as well override it")
    if run_flags:
        add_run_arguments(t)
    t.add_argument("--runs-dir", default="runs")
    t.add_argument("--checkpoint-dir", default=None, help="default: RUNS_DIR/.checkpoints (git-ignored)")
    t.add_argument("--data-root", default=None, help="default: $LOSSNB_DATA or ./data")
    t.add_argument("--download", action="store_true", help="let torchvision download the data set")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    t.add_argument("--force", action="store_true", help="start over even if the run finished or has a checkpoint")
    t.add_argument("--replace-broken", action="store_true",
                   help="train again a run whose record is broken (a file missing or cut short); never a whole one")
    t.add_argument("--keep-checkpoints", action="store_true", help=KEEP_HELP)
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--verbose", action="store_true", help="print each run's whole summary (JSON) at the end")
    t.set_defaults(func=_train)

    ls = sub.add_parser("losses", help="list the losses, describe one, or check one against the contract "
                                       "(lossnb losses check path/custom_loss.py)")
    ls.add_argument("name", nargs="?", help="a loss name or loss file to describe, or 'check'")
    ls.add_argument("target", nargs="?", help="with check: the loss file (or name) to check")
    ls.set_defaults(func=_losses)

    ex = sub.add_parser("export-loss", help="write a standalone compute_loss for the benchmark's custom_loss.py")
    ex.add_argument("name")
    ex.add_argument("--loss-param", action="append", metavar="KEY=VALUE")
    ex.add_argument("-o", "--output", help="file to write (default: stdout)")
    ex.set_defaults(func=_export)

    g = sub.add_parser("grid", help="train every unfinished run of a grid file, in packs")
    g.add_argument("file", help="grid file (YAML), e.g. grids/report-convnet.yaml")
    g.add_argument("--backend", default="local", choices=["local", "ray"])
    g.add_argument("--pack", type=int, default=None,
                   help="runs trained at once as one packed model (default: 12 with a GPU; on a CPU, measured "
                        "for the network: the fastest of 1, 2, 4, 8, 16 runs per pack)")
    g.add_argument("--workers", type=int, default=None, help="local: packs at a time (default: one per GPU; on a CPU, 1 or one per core, as measured "
                        "with the pack size)")
    g.add_argument("--retrain-broken", action="store_true",
                   help="train again the runs whose records are broken (listed as skipped without this flag)")
    g.add_argument("--partial", action="store_true",
                   help="with --time-budget: after the packs that fit, start one that does not, to be stopped when "
                        "the time is up and resumed from its checkpoints by a later call")
    g.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                   help="start only the packs whose whole runs fit in this time, one after another (each pack "
                        "shape is timed briefly first); the others are left for later")
    g.add_argument("--address", default=None, help="ray: cluster address (default: start a local Ray)")
    g.add_argument("--only", action="append", metavar="KEY=VALUE", help="restrict to arch/dataset/loss/seed")
    g.add_argument("--runs-dir", default="runs")
    g.add_argument("--checkpoint-dir", default=None, help="default: RUNS_DIR/.checkpoints (git-ignored)")
    g.add_argument("--data-root", default=None, help="default: $LOSSNB_DATA or ./data")
    g.add_argument("--keep-checkpoints", action="store_true", help=KEEP_HELP + " (local backend)")
    g.add_argument("--dry-run", action="store_true", help="list what would run and what is skipped, run nothing")
    g.add_argument("--no-progress", action="store_true")
    g.set_defaults(func=_grid)

    b = sub.add_parser("book", help="execute the study notebooks with papermill and build the book (-W)")
    b.add_argument("--root", default=".", help="the book root (the repository)")
    b.add_argument("--quick", action="store_true", help="small parameters (for tests)")
    b.add_argument("--no-execute", action="store_true", help="build from the executed notebooks already there")
    b.set_defaults(func=_book)
    return parser


def _check_folders(args) -> None:
    """Folders given on the command line, refused before anything runs: a data root that does not exist (its
    data would silently come from elsewhere), a runs folder that is a file."""
    data_root = getattr(args, "data_root", None)
    if data_root is not None and not getattr(args, "download", False) and not Path(data_root).is_dir():
        raise ValueError(f"--data-root {data_root}: no such folder (leave it out to read {default_root()})")
    runs_dir = getattr(args, "runs_dir", None)
    if runs_dir is not None and Path(runs_dir).exists() and not Path(runs_dir).is_dir():
        raise ValueError(f"--runs-dir {runs_dir} is a file, not a folder")


def default_root() -> str:
    from .data.datasets import default_data_root

    return f"$LOSSNB_DATA, ./data or the Debian package's folder; now {default_data_root()}"


def _dataset_not_found() -> type:
    from .data import DatasetNotFound  # torch, imported only once an error is being reported

    return DatasetNotFound


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(run_flags="train" in argv).parse_args(argv)
    try:
        _check_folders(args)
        return args.func(args)
    except (ValueError, _dataset_not_found()) as e:  # evaluated only when something was raised  # bad names, values and files: one clear line, no traceback
        print(f"lossnb {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: what was kept and how to go on, in one line
        again = {"train": "run the same command with --resume", "grid": "run the same grid command again"}
        print(f"\nlossnb {args.command}: interrupted; "
              + (f"checkpoints are kept, {again[args.command]}" if args.command in again else "nothing was written"),
              file=sys.stderr)
        return 130
    except OSError as e:  # disk full, read-only, a file where a folder belongs: the OS's reason and the path
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"lossnb {args.command}: {e.strerror or e}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
