"""K models of one architecture trained as one module (the idea of HFTA, Wang et al., MLSys 2021).

Run k's channels are block k of every activation: each convolution becomes one grouped convolution over
the K runs' channels, each BatchNorm one BatchNorm over K*C channels (it is per channel), each Linear one
batched matmul. Nothing mixes the blocks, so each run computes exactly its own function and, under the sum
of the runs' losses, receives exactly its own gradient; the GPU sees K times the work per launch. The first
convolution may instead be one dense convolution with a block-diagonal weight (FIRST_CONV_FORMS): on a CPU, where
each run's input has a few channels, oneDNN's dense kernel outruns its grouped one despite K times the arithmetic.
Written by hand because torch.func.vmap over stacked modules cannot update BatchNorm running statistics in
place, and its grouped-convolution lowering is the same as this.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..models import CosineClassifier

FIRST_CONV_FORMS = ("grouped", "block_diagonal")  # how a pack computes its first convolution (same parameters)

PARAMETER_FREE = (nn.ReLU, nn.ReLU6, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Dropout, nn.Flatten,
                  nn.Identity, nn.Sequential)


class PackedLinear(nn.Module):
    """K Linear layers (or K CosineClassifiers, cosine=True) as one batched matmul: (N, K*in) -> (N, K*out);
    weight (K, out, in), bias (K, out)."""

    def __init__(self, linears: list[nn.Module], cosine: bool = False):
        super().__init__()
        self.k, self.in_features, self.out_features = len(linears), linears[0].in_features, linears[0].out_features
        self.cosine = cosine
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in linears]))
        bias = getattr(linears[0], "bias", None)
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in linears])) if bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        x = x.reshape(n, self.k, self.in_features).transpose(0, 1)  # (K, N, in)
        weight = self.weight
        if self.cosine:  # each run's features and class weights normalised on their own
            x, weight = F.normalize(x, dim=2), F.normalize(weight, dim=2)
        y = torch.bmm(x, weight.transpose(1, 2))
        if self.bias is not None:
            y = y + self.bias[:, None, :]
        return y.transpose(0, 1).reshape(n, self.k * self.out_features)


def _packed_conv(convs: list[nn.Conv2d]) -> nn.Conv2d:
    c = convs[0]
    k = len(convs)
    packed = nn.Conv2d(k * c.in_channels, k * c.out_channels, c.kernel_size, c.stride, c.padding, c.dilation,
                       groups=k * c.groups, bias=c.bias is not None, padding_mode=c.padding_mode)
    with torch.no_grad():
        packed.weight.copy_(torch.cat([m.weight for m in convs]))
        if c.bias is not None:
            packed.bias.copy_(torch.cat([m.bias for m in convs]))
    return packed


class BlockDiagonalConv2d(nn.Conv2d):
    """K runs' first convolutions (a grouped convolution's parameters and state) computed as one dense convolution
    whose weight holds run k's kernels in block (k, k) and zeros elsewhere. The zeros come from multiplying by a
    0/1 mask, never from a copy, so each run stays exactly its own: run k's outputs add only exact zeros from the
    other runs' inputs, and its weight's gradient is its own block's (the mask multiplies the rest by zero). A
    run's non-finite weights or gradient (a diverged member) stay in its own row of blocks, since the mask
    multiplies them there alone. That holds for finite inputs that carry no gradient, the data; a dense
    convolution's input gradient would mix the runs' gradients, so an input that needs one is refused."""

    def __init__(self, grouped: nn.Conv2d):
        if grouped.padding_mode != "zeros":
            raise ValueError(f"a block-diagonal convolution pads with zeros, not {grouped.padding_mode!r}")
        super().__init__(grouped.in_channels, grouped.out_channels, grouped.kernel_size, grouped.stride,
                         grouped.padding, grouped.dilation, grouped.groups, grouped.bias is not None,
                         grouped.padding_mode, device=grouped.weight.device, dtype=grouped.weight.dtype)
        self.load_state_dict(grouped.state_dict())
        k = self.groups
        self.register_buffer("mask", torch.eye(k, dtype=self.weight.dtype, device=self.weight.device)
                             .view(k, 1, k, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            raise RuntimeError("a block-diagonal convolution packs only a network's first convolution, whose input "
                               "is the data: this one's input needs a gradient")
        k, w = self.groups, self.weight
        dense = (w.unflatten(0, (k, -1)).unsqueeze(2) * self.mask.to(w.dtype)).flatten(2, 3).flatten(0, 1)
        dense = dense.contiguous(memory_format=_memory_format(w))
        return F.conv2d(x, dense, self.bias, self.stride, self.padding, self.dilation)  # one group: all K runs


def _memory_format(t: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) \
        and not t.is_contiguous() else torch.contiguous_format


def _packed_batchnorm(norms: list[nn.BatchNorm2d]) -> nn.BatchNorm2d:
    b = norms[0]
    packed = nn.BatchNorm2d(len(norms) * b.num_features, b.eps, b.momentum, b.affine, b.track_running_stats)
    with torch.no_grad():
        for name, _ in list(packed.named_parameters()) + list(packed.named_buffers()):
            if name != "num_batches_tracked":
                getattr(packed, name).copy_(torch.cat([getattr(m, name) for m in norms]))
    return packed


class Pack(nn.Module):
    """A pack of K models: input (N, K*C, H, W), run k's images in channel block k; output (K, N, classes)."""

    def __init__(self, models: list[nn.Module], first_conv: str = "grouped"):
        """``first_conv``: the first convolution's form (FIRST_CONV_FORMS), the same function either way."""
        super().__init__()
        if first_conv not in FIRST_CONV_FORMS:
            raise ValueError(f"first_conv={first_conv!r}; choose one of: {', '.join(FIRST_CONV_FORMS)}")
        self.k = len(models)
        self.net = models[0] if self.k == 1 else _pack(models, first_conv)
        self.stacked = {f"{name}.{p}" for name, m in self.net.named_modules() if isinstance(m, PackedLinear)
                        for p in ("weight", "bias")}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out.view(out.shape[0], self.k, -1).transpose(0, 1)

    def member(self, name: str, tensor: torch.Tensor, k: int) -> torch.Tensor:
        """Run k's part of a packed parameter or buffer (or of a tensor shaped like one): a view."""
        if name in self.stacked:
            return tensor[k]
        if tensor.dim() == 0:  # num_batches_tracked: one count, the same for every run
            return tensor
        return tensor.view(self.k, -1, *tensor.shape[1:])[k]

    def member_state(self, k: int) -> dict[str, torch.Tensor]:
        """Run k's state_dict, loadable into its solo model."""
        return {name: self.member(name, t, k).clone() for name, t in self.net.state_dict().items()}

    def load_member_state(self, k: int, state: dict[str, torch.Tensor]) -> None:
        own = self.net.state_dict()
        if set(state) != set(own):
            raise ValueError(f"a member state for another model: {sorted(set(state) ^ set(own))[:3]} ...")
        with torch.no_grad():
            for name, t in own.items():
                target = self.member(name, t, k)
                if tuple(state[name].shape) != tuple(target.shape):  # copy_ would broadcast some silently
                    raise ValueError(f"{name} has shape {tuple(state[name].shape)}, the model's is "
                                     f"{tuple(target.shape)}")
                target.copy_(state[name])


def _pack(models: list[nn.Module], first_conv: str) -> nn.Module:
    packed = copy.deepcopy(models[0])
    modules = [dict(m.named_modules()) for m in models]
    convs = 0
    for name, module in models[0].named_modules():
        group = [mods[name] for mods in modules]
        if isinstance(module, nn.Conv2d):
            conv = _packed_conv(group)
            # the first registered is the first applied in every model here; the forward refuses it otherwise
            _replace(packed, name, BlockDiagonalConv2d(conv) if first_conv == "block_diagonal" and not convs else conv)
            convs += 1
        elif isinstance(module, nn.BatchNorm2d):
            _replace(packed, name, _packed_batchnorm(group))
        elif isinstance(module, nn.Linear):
            _replace(packed, name, PackedLinear(group))
        elif isinstance(module, CosineClassifier):
            _replace(packed, name, PackedLinear(group, cosine=True))
        elif next(module.parameters(recurse=False), None) is not None or \
                next(module.buffers(recurse=False), None) is not None:
            raise ValueError(f"cannot pack {type(module).__name__} ({name}): it holds parameters and no packed "
                             "form is written for it")
    return packed


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)
