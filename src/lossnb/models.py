"""CIFAR-variant CNNs for 32x32 inputs with 1 or 3 channels and any class count.

The architectures follow chenyaofo/pytorch-cifar-models, the code behind the public
cross-entropy logs the benchmark compares against (ResNet-56 C100 72.63, VGG-16-BN
C100 74.00); blocks come from torchvision where it has them.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.mobilenetv2 import MobileNetV2 as _TorchvisionMobileNetV2
from torchvision.models.resnet import BasicBlock
from torchvision.ops.misc import Conv2dNormActivation


class CifarResNet(nn.Module):
    """He et al. 2016, Sec. 4.2: 3 stages of 16/32/64 channels, n BasicBlocks each (depth 6n + 2).

    Shortcuts that change shape are 1x1 conv + BN (option B, as chenyaofo's code).
    """

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        blocks = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU(inplace=True))
        stages, width = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            stages.append(self._stage(width, planes, blocks, stride))
            width = planes
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes))
        layers = [BasicBlock(inplanes, planes, stride, downsample)]
        layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


_VGG_CFGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class CifarVGG(nn.Module):
    """Simonyan & Zisserman 2015 with BatchNorm; CIFAR head 512-512-512-C with dropout (chenyaofo's variant).

    Written here because torchvision's VGG has a 7x7 ImageNet head and a fixed 3-channel stem.
    """

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for v in _VGG_CFGS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                channels = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(512, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


# torchvision's setting with the first stride-2 stage at stride 1 (chenyaofo's CIFAR change)
_CIFAR_MOBILENETV2_SETTING = [[1, 16, 1, 1], [6, 24, 2, 1], [6, 32, 3, 2], [6, 64, 4, 2],
                              [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]


def mobilenetv2(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0) -> nn.Module:
    """Sandler et al. 2018, CIFAR variant: torchvision's MobileNetV2 with a stride-1 stem and second stage."""
    model = _TorchvisionMobileNetV2(num_classes=num_classes, width_mult=width_mult,
                                    inverted_residual_setting=_CIFAR_MOBILENETV2_SETTING)
    stem_out = model.features[0].out_channels
    model.features[0] = Conv2dNormActivation(in_channels, stem_out, stride=1, norm_layer=nn.BatchNorm2d,
                                             activation_layer=nn.ReLU6)
    nn.init.kaiming_normal_(model.features[0][0].weight, mode="fan_out")
    return model


class ReportConvNet(nn.Module):
    """The small ConvNet of the report this project reproduces: conv 3x3 -> 4, pool, conv 3x3 -> 8, pool, fc 288-32-C."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                                      nn.Conv2d(4, 8, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Linear(8 * 6 * 6, 32), nn.ReLU(inplace=True), nn.Linear(32, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class ReportConvNetBN(nn.Module):
    """The report's ConvNet with BatchNorm after each convolution and a width multiplier w: conv 3x3 -> 4w, BN,
    pool, conv 3x3 -> 8w, BN, pool, fc 8w*36-32w-C. The member of its family in the benchmark's regime (BatchNorm,
    fits its training data); convolutions have no bias, which the BatchNorm after each would cancel."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 1):
        super().__init__()
        c1, c2, hidden = 4 * width, 8 * width, 32 * width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, bias=False), nn.BatchNorm2d(c1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, bias=False), nn.BatchNorm2d(c2), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Linear(c2 * 6 * 6, hidden), nn.ReLU(inplace=True),
                                        nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def resnet20(num_classes=10, in_channels=3): return CifarResNet(20, num_classes, in_channels)  # noqa: E704
def resnet32(num_classes=10, in_channels=3): return CifarResNet(32, num_classes, in_channels)  # noqa: E704
def resnet44(num_classes=10, in_channels=3): return CifarResNet(44, num_classes, in_channels)  # noqa: E704
def resnet56(num_classes=10, in_channels=3): return CifarResNet(56, num_classes, in_channels)  # noqa: E704
def resnet110(num_classes=10, in_channels=3): return CifarResNet(110, num_classes, in_channels)  # noqa: E704
def vgg11_bn(num_classes=10, in_channels=3): return CifarVGG(11, num_classes, in_channels)  # noqa: E704
def vgg13_bn(num_classes=10, in_channels=3): return CifarVGG(13, num_classes, in_channels)  # noqa: E704
def vgg16_bn(num_classes=10, in_channels=3): return CifarVGG(16, num_classes, in_channels)  # noqa: E704
def vgg19_bn(num_classes=10, in_channels=3): return CifarVGG(19, num_classes, in_channels)  # noqa: E704
def convnet(num_classes=10, in_channels=3): return ReportConvNet(num_classes, in_channels)  # noqa: E704
def convnet_bn(num_classes=10, in_channels=3): return ReportConvNetBN(num_classes, in_channels)  # noqa: E704
def convnet_bn_w2(num_classes=10, in_channels=3): return ReportConvNetBN(num_classes, in_channels, 2)  # noqa: E704
def convnet_bn_w4(num_classes=10, in_channels=3): return ReportConvNetBN(num_classes, in_channels, 4)  # noqa: E704


class CosineClassifier(nn.Module):
    """logits = cos θ between the L2-normalised feature and each class's L2-normalised weight, no bias
    (NormFace, Wang et al. 2017): the head the angular-margin losses (lossnb.losses.angular) are defined on."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)  # nn.Linear's; only the direction matters here

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "CosineClassifier":
        """The head with the linear layer's initial weight: a cosine-head run differs from its linear-head
        twin of the same seed in the head alone."""
        head = cls(linear.in_features, linear.out_features)
        with torch.no_grad():
            head.weight.copy_(linear.weight)
        return head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))


HEADS = ("linear", "cosine")


def _with_cosine_head(model: nn.Module) -> nn.Module:
    """The model with its last Linear (the classifier, in every architecture here) made a CosineClassifier."""
    name = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    parent, _, leaf = name.rpartition(".")
    owner = model.get_submodule(parent) if parent else model
    setattr(owner, leaf, CosineClassifier.from_linear(getattr(owner, leaf)))
    return model


MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet20": resnet20, "resnet32": resnet32, "resnet44": resnet44, "resnet56": resnet56,
    "resnet110": resnet110, "vgg11_bn": vgg11_bn, "vgg13_bn": vgg13_bn, "vgg16_bn": vgg16_bn,
    "vgg19_bn": vgg19_bn, "mobilenetv2": mobilenetv2, "convnet": convnet,
    # the width in the name, as torchvision names its wide ResNets: one setting, one home (the arch)
    "convnet_bn": convnet_bn, "convnet_bn_w2": convnet_bn_w2, "convnet_bn_w4": convnet_bn_w4,
}


def available_models() -> list[str]:
    return sorted(MODELS)


def get_model(name: str, num_classes: int, in_channels: int = 3, head: str = "linear") -> nn.Module:
    """A fresh model by name, with a linear or a cosine classifier head; an unknown name lists the choices."""
    if name not in MODELS:
        raise ValueError(f"unknown arch {name!r}; choose one of: {', '.join(available_models())}")
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of: {', '.join(HEADS)}")
    model = MODELS[name](num_classes=num_classes, in_channels=in_channels)
    return _with_cosine_head(model) if head == "cosine" else model
