"""Where a run executes: device, precision, memory format, and the versions recorded with it."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import torch
import torchvision

import lossnb


DEVICE_CHOICES = "auto, cpu, cuda, cuda:N"


def check_device_name(name: str) -> torch.device | None:
    """The device a name gives (None for auto), refused in one line unless it is one lossnb trains on: the
    one place a device name is validated (a run's settings, and where it executes)."""
    if name == "auto":
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"device={name!r}; choose one of: {DEVICE_CHOICES}")
    return device


def resolve_device(name: str) -> torch.device:
    """The device a run executes on: auto is the GPU where there is one; a GPU this machine lacks is refused."""
    device = check_device_name(name)
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"device={name!r} but this machine has {torch.cuda.device_count()} CUDA GPU(s) visible; "
                         "choose cpu, auto or an existing cuda:N")
    return device


def resolve_execution(precision: str, channels_last: str, device: torch.device, arch: str, num_classes: int,
                      in_channels: int, head: str, say=print, pack: int = 1, first_conv: str = "auto") -> dict:
    """The precision, memory format and (for a pack) form of the first convolution a run uses. A setting given
    stays; `auto` on CUDA is bf16 (where the GPU has it), channels_last and grouped; `auto` on a CPU is the
    fastest measured bare step of this model shape, packed ``pack`` runs at a time, on this machine
    (lossnb.trainer.probe), among the candidates the given settings leave. A solo run's first convolution is
    "grouped" (one group). Returns {"precision", "channels_last", "first_conv", "chosen_by"} (+ "probe_rates" on
    a CPU), what config.json records as resolved."""
    first_conv = first_conv if pack > 1 else "grouped"
    pinned = precision != "auto" and channels_last != "auto" and first_conv != "auto"
    if device.type != "cpu" or pinned:
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return _as_given(("bf16" if bf16 else "fp32") if precision == "auto" else precision, channels_last,
                         first_conv)
    from .probe import candidate_setting, probe

    measured = probe(arch, num_classes, in_channels, head, say=say, pack=pack)
    allowed = {name: rate for name, rate in measured["rates"].items()
               if all(given in ("auto", value) for given, value in
                      zip((precision, channels_last, first_conv), _as_asked(candidate_setting(name))))}
    if not allowed:  # bf16 asked where it does not agree with fp32: the setting stands, unmeasured
        return _as_given(precision, channels_last, first_conv)
    best = max(allowed, key=allowed.get)
    return {**candidate_setting(best), "chosen_by": "bare-step probe on this machine",
            "probe_rates": measured["rates"]}


def _as_given(precision: str, channels_last: str, first_conv: str) -> dict:
    return {"precision": precision, "channels_last": channels_last != "off",
            "first_conv": "grouped" if first_conv == "auto" else first_conv, "chosen_by": "settings"}


def _as_asked(setting: dict) -> tuple[str, str, str]:
    """A measured candidate as the run's settings name it: (precision, "on"/"off", first_conv)."""
    return setting["precision"], "on" if setting["channels_last"] else "off", setting["first_conv"]


def run_execution(cfg, data, device: torch.device, pack: int = 1) -> dict:
    """resolve_execution for runs of ``cfg``'s settings on ``data``, ``pack`` at a time, saying what it measures."""
    return resolve_execution(cfg.precision, cfg.channels_last, device, cfg.arch, data.num_classes, data.in_channels,
                             cfg.head, say=lambda line: print(line, file=sys.stderr), pack=pack,
                             first_conv=cfg.first_conv)


def git_commit() -> dict:
    """The checkout's commit; LOSSNB_GIT_COMMIT / LOSSNB_GIT_DIRTY where the sender of a copied tree (a Ray
    working_dir, a GPU machine's copy, whose .git may be missing or stale) recorded the commit it sent."""
    if os.environ.get("LOSSNB_GIT_COMMIT"):
        return {"commit": os.environ["LOSSNB_GIT_COMMIT"], "dirty": os.environ.get("LOSSNB_GIT_DIRTY") == "1"}
    repo = Path(lossnb.__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                    capture_output=True, text=True, check=True).stdout.strip())
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def describe_environment(device: torch.device) -> dict:
    return {
        "lossnb": lossnb.__version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
        "python": platform.python_version(), "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "cpu_threads": torch.get_num_threads(), "git": git_commit(),
    }
