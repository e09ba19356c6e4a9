"""Where a run executes: device, precision, memory format, and the versions recorded with it."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch
import torchvision

import lossnb


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"device={name!r} but this machine has {torch.cuda.device_count()} CUDA GPU(s) visible; "
                         "choose cpu, auto or an existing cuda:N")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device={name!r}; choose one of: auto, cpu, cuda, cuda:N")
    return device


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX-512 bf16: where bf16 autocast speeds up CPU training (elsewhere it is slower than fp32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"


def resolve_channels_last(setting: str, device: torch.device) -> bool:
    """On unless asked off: faster on CUDA, and in a quick check here for fp32 CPU training of ResNet-20 too."""
    return setting != "off"


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
