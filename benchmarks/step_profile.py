"""Where a training step's time goes: lossnb's step against the bare step, operation by operation.

    python benchmarks/step_profile.py [--arch convnet] [--image-prep resize-rgb] [--threads 2] [--pack K]

lossnb: one run, or K packed (cross-entropy, fp32, channels_last), on the first STEPS batches of the benchmark's
FashionMNIST task, its real epochs (crops, flips, loss, bookkeeping, SGD). Bare: probe.bare_step_rate's step (the
model, or K packed as the trainer packs them, cross-entropy, backward, torch.optim.SGD) on one fixed batch of 128
per run. Both are warmed up for WARM_EPOCHS epochs of
STEPS steps, alternating, then each is timed (best of REPEATS) and profiled once with torch.profiler. The JSON
lists each step's wall time and, per operation, its self time per step in both, sorted by what lossnb spends
beyond the bare step: what trainer_speed's `vs_model_step` leaves out, by name. The profiler's own overhead
inflates the op times alike; the wall times are unprofiled.
"""
import argparse
import dataclasses
import json
import pathlib
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from machine import describe_machine  # noqa: E402

STEPS, WARM_EPOCHS, REPEATS, LISTED = 40, 4, 3, 16


def _lossnb_epoch(arch, prep, pack):
    from lossnb.data import load_dataset
    from lossnb.trainer import RunConfig
    from lossnb.trainer.state import PackRun

    full = load_dataset("fashionmnist", "data", prep=prep)
    n = STEPS * 128
    data = dataclasses.replace(full, train_x=full.train_x[:n], train_y=full.train_y[:n])
    cfgs = [RunConfig(arch=arch, dataset="fashionmnist", loss="ce", seed=seed, image_prep=prep, epochs=100,
                      precision="fp32", channels_last="on") for seed in range(pack)]
    run = PackRun(cfgs, data, torch.device("cpu"))
    epoch = iter(range(100))
    return lambda: run.train_epoch(next(epoch), False), data.in_channels


def _bare_steps(arch, channels, pack):
    from lossnb.trainer import probe

    model = probe._model(arch, 10, channels, "linear", True, pack).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(128, pack * channels, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (pack, 128) if pack > 1 else (128,))
    return lambda: [probe._step(model, opt, x, y, "fp32") for _ in range(STEPS)]


def _timed(fn):
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best / STEPS


def _op_times(fn):
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key: e.self_cpu_time_total / STEPS for e in prof.key_averages()}  # microseconds per step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="convnet")
    parser.add_argument("--image-prep", default="resize-rgb")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pack", type=int, default=1, help="runs in one pack (default 1: a run alone)")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/step_profile_cpu[_pack<K>].json")
    args = parser.parse_args(argv)
    out = args.out or f"benchmarks/results/step_profile_cpu{f'_pack{args.pack}' if args.pack > 1 else ''}.json"
    torch.set_num_threads(args.threads)
    lossnb, channels = _lossnb_epoch(args.arch, args.image_prep, args.pack)
    bare = _bare_steps(args.arch, channels, args.pack)
    for _ in range(WARM_EPOCHS):  # alternating, so that neither is measured colder than the other
        lossnb()
        bare()
    wall = {"lossnb": _timed(lossnb), "bare": _timed(bare)}
    ops = {"lossnb": _op_times(lossnb), "bare": _op_times(bare)}
    extra = sorted(set(ops["lossnb"]) | set(ops["bare"]),
                   key=lambda k: ops["bare"].get(k, 0) - ops["lossnb"].get(k, 0))
    result = {"what": __doc__.split("\n")[0], "machine": describe_machine("cpu"), "arch": args.arch,
              "image_prep": args.image_prep, "threads": args.threads, "runs_per_pack": args.pack, "steps": STEPS,
              "ms_per_step": {k: 1e3 * v for k, v in wall.items()}, "lossnb_vs_bare": wall["bare"] / wall["lossnb"],
              "op_self_us_per_step": [{"op": k, "lossnb": ops["lossnb"].get(k, 0.0), "bare": ops["bare"].get(k, 0.0)}
                                      for k in extra[:LISTED]]}
    pathlib.Path(out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"{args.arch} {args.image_prep}, {args.pack} run(s) a pack, {args.threads} thread(s): lossnb {result['ms_per_step']['lossnb']:.2f} ms "
          f"a step, bare {result['ms_per_step']['bare']:.2f} ms ({result['lossnb_vs_bare']:.2f}x)")
    for row in result["op_self_us_per_step"]:
        print(f"  {row['op'][:48]:<48} lossnb {row['lossnb']:8.1f} us  bare {row['bare']:8.1f} us")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
