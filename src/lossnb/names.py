"""Losses in words for tables and legends ("label smoothing ε=0.1"), from a loss's registry name and settings."""
from __future__ import annotations

from typing import Any

PLAIN = {"ce": "cross-entropy", "label_smoothing": "label smoothing", "focal": "focal", "poly1": "Poly-1",
         "mae": "MAE", "maxsup": "MaxSup", "capped_ce": "capped CE", "selfshaped_ls": "self-shaped LS",
         "complement_ls": "complement LS", "smooth_poly": "ramped LS + Poly-1 + logit penalty",
         "arcface": "ArcFace", "cosface": "CosFace", "sphereface": "SphereFace", "bitempered": "bi-tempered",
         "dual_focal": "dual focal", "entmax15": "1.5-entmax", "flsd53": "FLSD-53", "gce": "generalized CE",
         "logitnorm": "LogitNorm", "margin": "target-logit margin", "mbls": "MbLS", "online_ls": "online LS",
         "polyn": "Poly-N", "sce": "symmetric CE", "sparsemax": "sparsemax",
         "confidence_penalty": "confidence penalty", "logit_penalty": "logit penalty"}
SYMBOLS = {"eps": "ε", "epsilon": "ε", "gamma": "γ", "alpha": "α", "beta": "β", "tau": "τ", "lam": "λ"}
HIDDEN = {("label_smoothing", "convention"), ("maxsup", "alpha_start"), ("maxsup", "alpha_end"),
          *(("smooth_poly", k) for k in ("eps_start", "eps_end", "poly", "logit_penalty"))}


def plain_name(loss: str, params: dict[str, Any] | None = None) -> str:
    """'focal γ=2', 'capped CE p_cap=0.97, sharpness=10'; a setting that is the loss's definition (label
    smoothing's uniform convention, MaxSup's published schedule) is left out."""
    shown = [f"{SYMBOLS.get(k, k)}={_number(v)}" for k, v in sorted((params or {}).items())
             if (loss, k) not in HIDDEN]
    name = PLAIN.get(loss, loss.replace("_", " "))
    return f"{name} {', '.join(shown)}" if shown else name


def labels_of(runs) -> dict[str, str]:
    """{loss tag: plain name} for every loss of a run table (lossnb.results.load_runs)."""
    firsts = runs.drop_duplicates("loss_tag")
    return {tag: plain_name(loss, params) for tag, loss, params in
            zip(firsts["loss_tag"], firsts["loss"], firsts["loss_params"])}


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


ARCHITECTURES = {"convnet": "the report's ConvNet", "convnet_bn": "the report's ConvNet with BatchNorm",
                 "convnet_bn_w2": "the report's ConvNet with BatchNorm, twice as wide",
                 "convnet_bn_w4": "the report's ConvNet with BatchNorm, four times as wide",
                 "resnet20": "ResNet-20", "resnet32": "ResNet-32", "resnet44": "ResNet-44", "resnet56": "ResNet-56",
                 "resnet110": "ResNet-110", "vgg11_bn": "VGG-11-BN", "vgg13_bn": "VGG-13-BN", "vgg16_bn": "VGG-16-BN",
                 "vgg19_bn": "VGG-19-BN", "mobilenetv2": "MobileNetV2"}
DATASETS = {"fashionmnist": "FashionMNIST", "mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


def study_in_words(run, capital: bool = False) -> str:
    """A study in words from one of its runs (a row of lossnb.results.load_runs): "ResNet-20 on FashionMNIST,
    4 epochs, validation split"; ``capital`` to open a heading ("The report's ConvNet ...")."""
    arch = ARCHITECTURES.get(run["arch"], run["arch"]) + (" (cosine head)" if run["head"] == "cosine" else "")
    text = f"{arch} on {DATASETS.get(run['dataset'], run['dataset'])}, {run['epochs']} epochs"
    text += ", validation split" if run["eval_split"] == "val" else ""
    return text[:1].upper() + text[1:] if capital else text


def grid_in_words(grid) -> str:
    """The studies a grid (lossnb.grid.load_grid) trains, in words, capitalised, joined by "; "."""
    return "; ".join(dict.fromkeys(study_in_words({"arch": c.arch, "head": c.head, "dataset": c.dataset,
                                                   "epochs": c.epochs, "eval_split": "val" if c.val_size else "test"},
                                                  capital=True) for c in grid.runs))
