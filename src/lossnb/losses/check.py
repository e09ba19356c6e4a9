"""The loss contract tried on random inputs: what `lossnb losses check FILE` reports.

Each check is one line, PASS or FAIL with what was seen; the cost against F.cross_entropy (forward and
backward, the fastest of repeated timings on this machine) is reported, not judged.
"""
from __future__ import annotations

import dataclasses
import time

import torch
import torch.nn.functional as F

from .registry import get, make_config

SHAPES = ((128, 10), (128, 100), (7, 2))
CONTRACT_KEYS = ("num_classes", "epoch", "total_epochs")


@dataclasses.dataclass
class Check:
    name: str
    passed: bool
    detail: str


class _RecordingConfig(dict):
    """The contract's config, noting which keys the loss reads."""

    def __init__(self, *args):
        super().__init__(*args)
        self.read: set[str] = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)


def _call(loss, logits, targets, config, fresh=True):
    if fresh and getattr(getattr(loss, "spec", None), "stateful", False):  # each check a run of its own
        loss.reset()
    z = logits.detach().clone().requires_grad_()
    kept = targets.clone()
    value = loss(z, targets, config)
    if not torch.equal(z.detach(), logits.detach()) or not torch.equal(targets, kept):
        raise TypeError("wrote into its inputs (the logits or targets it was given): a trainer measures with them")
    if not torch.is_tensor(value) or value.dim() != 0 or not value.is_floating_point():
        raise TypeError(f"returned {type(value).__name__} {tuple(getattr(value, 'shape', ()))}, "
                        "not a floating-point scalar tensor")
    value.backward()
    return value.detach(), z.grad


def check_loss(name: str, seed: int = 0) -> list[Check]:
    """Every check on the loss ``name`` (a registry name or a loss file)."""
    try:
        loss = get(name)
    except ValueError as err:
        return [Check("loads", False, str(err))]
    except SystemExit as err:  # a file that exits as it is imported
        return [Check("loads", False, _exited(err))]
    results = [Check("loads", True, f"{loss.spec.name}: {loss.spec.summary}")]
    gen = torch.Generator().manual_seed(seed)

    def attempt(label, fn):
        try:
            passed, detail = fn()
        except SystemExit as err:  # a loss that ends the process has failed the check, and the others still run
            passed, detail = False, _exited(err)
        except Exception as err:  # whatever the loss raises is the finding
            passed, detail = False, f"{type(err).__name__}: {str(err)[:200]}"
        results.append(Check(label, passed, detail))

    def inputs(n, c, scale=3.0, dtype=torch.float32):
        return (torch.randn(n, c, generator=gen) * scale).to(dtype), torch.randint(0, c, (n,), generator=gen)

    def scalar_and_gradient():
        for n, c in SHAPES:
            value, grad = _call(loss, *inputs(n, c), make_config(c, 0, 200))
            if grad is None or not torch.isfinite(grad).all() or not torch.isfinite(value):
                return False, f"at {n}x{c}: value {value.item():.4g}, gradient {'missing' if grad is None else 'not finite'}"
        return True, "a finite scalar and a finite gradient at " + ", ".join(f"{n}x{c}" for n, c in SHAPES)

    def extreme_logits():
        value, grad = _call(loss, *inputs(64, 10, scale=1e4), make_config(10, 0, 200))
        ok = torch.isfinite(value) and grad is not None and torch.isfinite(grad).all()
        return bool(ok), f"logits of size 1e4: value {value.item():.4g}, gradient {'finite' if ok else 'not finite'}"

    def bf16_logits():
        value, grad = _call(loss, *inputs(64, 10, dtype=torch.bfloat16), make_config(10, 0, 200))
        ok = torch.isfinite(value) and grad is not None and torch.isfinite(grad.float()).all()
        return bool(ok), f"bf16 logits: value {value.item():.4g} ({value.dtype}), gradient {grad.dtype if grad is not None else None}"

    def deterministic():
        logits, targets = inputs(128, 10)
        a = _call(loss, logits, targets, make_config(10, 3, 200))
        b = _call(loss, logits, targets, make_config(10, 3, 200))
        # NaN where the other call has NaN is the same result (torch.equal counts NaN as unequal to itself)
        same = all(x.shape == y.shape and torch.allclose(x, y, rtol=0, atol=0, equal_nan=True)
                   for x, y in ((a[0], b[0]), (a[1], b[1])))
        return same, "the same inputs give the same value and gradient" if same else "two calls on the same inputs differ"

    def config_keys():
        config = _RecordingConfig(make_config(10, 5, 200))
        logits, targets = inputs(32, 10)
        try:  # the loss's own function: the contract checks of lossnb's wrapper read keys too
            loss.spec.fn(logits, targets, config, **({"state": {}} if loss.spec.stateful else {}), **loss.hparams)
        except KeyError as err:
            return False, f"reads {err}, a key the contract does not give (it gives {', '.join(CONTRACT_KEYS)})"
        extra = sorted(config.read - set(CONTRACT_KEYS))
        return not extra, f"reads {', '.join(sorted(config.read)) or 'no key'} of the config" + (
            f"; not in the contract: {', '.join(extra)}" if extra else "")

    for label, fn in (("scalar and gradient", scalar_and_gradient), ("finite at extreme logits", extreme_logits),
                      ("bf16 logits", bf16_logits), ("deterministic", deterministic), ("config keys", config_keys)):
        attempt(label, fn)
    if all(r.passed for r in results):
        results.append(Check("cost", True, cost_against_cross_entropy(loss)))
    return results


def _exited(err: SystemExit) -> str:
    return f"SystemExit({err.code!r}): the loss ends the process, which a trainer cannot survive"


def cost_against_cross_entropy(loss, repeats: int = 7, calls: int = 40) -> str:
    """Forward + backward time relative to F.cross_entropy on the same inputs: each the fastest of ``repeats``
    windows of ``calls`` calls after a warm-up, so that neither a first call's allocations nor a busy moment of
    the machine sets the ratio (a median of single calls moved by 100x between two runs of one file)."""
    parts = []
    for n, c in SHAPES[:2]:
        logits, targets = torch.randn(n, c), torch.randint(0, c, (n,))
        config = make_config(c, 0, 200)
        if hasattr(loss, "reset"):  # a new class count is a new run for a stateful loss
            loss.reset()
        ours = _best_seconds(lambda: _call(loss, logits, targets, config, fresh=False), repeats, calls)
        ref = _best_seconds(lambda: _call(lambda z, t, _: F.cross_entropy(z, t), logits, targets, config), repeats,
                            calls)
        parts.append(f"{ours / ref:.2f}x at {n}x{c}")
    return "forward + backward against F.cross_entropy on this CPU: " + ", ".join(parts)


def _best_seconds(fn, repeats: int, calls: int) -> float:
    for _ in range(calls // 4):
        fn()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - started) / calls)
    return best
