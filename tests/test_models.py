"""Model shapes and parameter counts against the published figures of the reference implementations."""
import pytest
import torch

from lossnb.models import available_models, get_model

# chenyaofo/pytorch-cifar-models README (#Params, millions, 2 decimals); He et al. 2016 Table 6 for ResNet-110
PUBLISHED_MILLIONS = {
    ("resnet20", 10): 0.27, ("resnet56", 10): 0.86, ("resnet110", 10): 1.7,
    ("resnet20", 100): 0.28, ("resnet32", 100): 0.47, ("resnet44", 100): 0.67, ("resnet56", 100): 0.86,
    ("vgg11_bn", 100): 9.80, ("vgg13_bn", 100): 9.99, ("vgg16_bn", 100): 15.30, ("vgg19_bn", 100): 20.61,
    ("vgg16_bn", 10): 15.25, ("mobilenetv2", 100): 2.35, ("mobilenetv2", 10): 2.24,
}


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch,classes", sorted(PUBLISHED_MILLIONS))
def test_parameter_count_matches_the_published_figure(arch, classes):
    published = PUBLISHED_MILLIONS[(arch, classes)]
    decimals = 1 if published == 1.7 else 2
    assert round(n_params(get_model(arch, classes)) / 1e6, decimals) == published


@pytest.mark.parametrize("arch,w", [("convnet_bn", 1), ("convnet_bn_w2", 2), ("convnet_bn_w4", 4)])
def test_convnet_bn_is_the_report_convnet_with_batchnorm_at_its_width(arch, w):
    """By hand: conv 3x3 in->4w (no bias), BN(4w), conv 3x3 4w->8w (no bias), BN(8w), fc 8w*6*6->32w, fc 32w->10."""
    c1, c2, hidden = 4 * w, 8 * w, 32 * w
    for channels in (3, 1):
        want = (channels * c1 * 9 + 2 * c1 + c1 * c2 * 9 + 2 * c2 + c2 * 36 * hidden + hidden + hidden * 10 + 10)
        assert n_params(get_model(arch, 10, in_channels=channels)) == want
    assert n_params(get_model("convnet_bn_w4", 10)) == 154010
    batchnorms = [m for m in get_model(arch, 10).modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert [m.num_features for m in batchnorms] == [c1, c2]


def test_report_convnet_layers_are_as_described():
    # conv 3->4 3x3 (112), conv 4->8 3x3 (296), fc 288->32 (9248), fc 32->10 (330)
    assert n_params(get_model("convnet", 10)) == 112 + 296 + 9248 + 330
    assert n_params(get_model("convnet", 10, in_channels=1)) == 40 + 296 + 9248 + 330


@pytest.mark.parametrize("arch", available_models())
@pytest.mark.parametrize("channels,classes", [(3, 100), (1, 10)])
def test_forward_shape_for_1_and_3_channel_32x32_input(arch, channels, classes):
    model = get_model(arch, classes, in_channels=channels).eval()
    with torch.no_grad():
        assert model(torch.randn(2, channels, 32, 32)).shape == (2, classes)


def test_unknown_arch_lists_the_choices():
    with pytest.raises(ValueError, match="unknown arch 'resnet18'.*resnet20.*vgg16_bn"):
        get_model("resnet18", 10)
