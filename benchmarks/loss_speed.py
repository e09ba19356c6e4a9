"""Forward+backward time of every registry loss relative to F.cross_entropy, measured in one run.

    python benchmarks/loss_speed.py [--device cuda] [--out benchmarks/results/loss_speed_cpu.json]

Timing uses torch.utils.benchmark (warm-up, blocked autorange, CUDA-synchronised);
each loss is timed on the same logits as cross-entropy, interleaved, so the ratio
is robust to the machine's drift. Target: every loss within 3x of cross-entropy.
What is timed is each loss's own function; lossnb's check of the contract on every
call (shapes, dtypes, the target range) is timed once apart, as its own row.
"""
import argparse
import json
import pathlib
import sys

import torch
import torch.nn.functional as F
from torch.utils.benchmark import Timer
from torch.utils._python_dispatch import TorchDispatchMode
from tqdm import tqdm

import lossnb.losses as L
from lossnb.losses.contract import check_inputs

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from machine import describe_machine  # noqa: E402

SHAPES = [(128, 10), (128, 100), (1024, 100)]  # the last: where arithmetic, not dispatch, dominates
TARGET_RATIO = 3.0
# reasons beyond op count, read off the implementations
WHY_SLOWER = {
    "bitempered": "the tempered normaliser is a fixed-point iteration (5 steps) with no closed form",
    "entmax15": "the exact entmax-1.5 mapping sorts each row and takes two cumulative sums",
    "sparsemax": "the exact sparsemax mapping sorts each row and takes a cumulative sum",
    "online_ls": "it also accumulates the soft-label statistics (two index_add) every step",
}


class _OpCounter(TorchDispatchMode):
    """Counts the aten ops dispatched (forward and backward): at 128 rows each costs its dispatch."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def bare(name):
    """The loss's own function with its default hyperparameters (and fresh state where it keeps one)."""
    loss = L.get(name)
    if loss.spec.stateful:
        return lambda z, t, cfg: loss.spec.fn(z, t, cfg, loss.state, **loss.hparams)
    return lambda z, t, cfg: loss.spec.fn(z, t, cfg, **loss.hparams)


def contract_check(z, t, cfg):
    """The check alone, made differentiable so that it is timed as a loss: z.sum() * 0 adds two ops."""
    check_inputs(z, t, cfg)
    return z.sum() * 0


def count_ops(loss_fn, logits, targets, config):
    z = logits.detach().requires_grad_()
    loss_fn(z, targets, config)  # a first call outside the count: state a loss creates on its first call
    with _OpCounter() as counter:
        loss_fn(z, targets, config).backward()
    return counter.count


def explain(name, ratio, ops, ce_ops):
    if ratio <= TARGET_RATIO:
        return ""
    why = f"{ops} aten ops forward+backward vs {ce_ops} for F.cross_entropy; at this size time is per-op dispatch"
    return f"{WHY_SLOWER[name]}; {why}" if name in WHY_SLOWER else why


def fwd_bwd_seconds(loss_fn, logits, targets, config, min_run_time):
    def step():
        z = logits.detach().requires_grad_()
        loss_fn(z, targets, config).backward()

    timer = Timer(stmt="step()", globals={"step": step})
    return timer.blocked_autorange(min_run_time=min_run_time).median


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--min-run-time", type=float, default=0.3, help="seconds per measurement")
    parser.add_argument("--out", default=None, help="JSON results file (default benchmarks/results/loss_speed_<device>.json)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    out = pathlib.Path(args.out or f"benchmarks/results/loss_speed_{device.type}.json")

    rows = []
    for n, c in SHAPES:
        g = torch.Generator().manual_seed(0)
        logits = torch.randn(n, c, generator=g).to(device)
        targets = torch.randint(0, c, (n,), generator=g).to(device)
        config = L.make_config(c, epoch=0, total_epochs=200)
        ce_fn = lambda z, t, cfg: F.cross_entropy(z, t)  # noqa: E731
        ce_ops = count_ops(ce_fn, logits, targets, config)
        for name in tqdm(L.available() + ["(contract check)"], desc=f"losses on ({n}, {c})"):
            fn = contract_check if name == "(contract check)" else bare(name)
            ce = fwd_bwd_seconds(ce_fn, logits, targets, config, args.min_run_time)
            ours = fwd_bwd_seconds(fn, logits, targets, config, args.min_run_time)
            ratio, ops = ours / ce, count_ops(fn, logits, targets, config)
            rows.append({"loss": name, "shape": [n, c], "seconds": ours, "ce_seconds": ce, "ratio_to_ce": ratio,
                         "aten_ops": ops, "ce_aten_ops": ce_ops, "within_target": ratio <= TARGET_RATIO,
                         "why_slower": explain(name, ratio, ops, ce_ops)})

    result = {"what": "forward+backward time of each loss / F.cross_entropy, same logits, same run",
              "target_ratio": TARGET_RATIO, "machine": describe_machine(str(device)), "results": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(r["loss"]) for r in rows)
    for r in rows:
        flag = "" if r["within_target"] else f"  > {TARGET_RATIO}x: {r['why_slower']}"
        print(f"{r['loss']:<{width}}  {str(tuple(r['shape'])):<10} {r['ratio_to_ce']:5.2f}x{flag}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
