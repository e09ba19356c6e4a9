"""A pack's first convolution computed as one dense convolution with a block-diagonal weight, against the form it
replaces, torch's grouped convolution (F.conv2d with groups=K): the same outputs and weight gradients in either
memory format, the same parameters and state, and a member's non-finite weights or gradient kept in its own
block, as grouped kernels keep them."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lossnb.models import get_model
from lossnb.trainer import RunConfig
from lossnb.trainer.pack import BlockDiagonalConv2d, Pack

K, CIN, COUT = 3, 3, 4
MEMBER = slice(COUT, 2 * COUT)  # member 1's output channels
OTHERS = [c for c in range(K * COUT) if not MEMBER.start <= c < MEMBER.stop]


@pytest.fixture
def convs():
    torch.manual_seed(0)
    grouped = nn.Conv2d(K * CIN, K * COUT, 3, padding=1, groups=K, bias=False).double()
    return grouped, BlockDiagonalConv2d(grouped)


def reference(grouped, x):
    return F.conv2d(x, grouped.weight, None, grouped.stride, grouped.padding, grouped.dilation, K)


@pytest.mark.parametrize("channels_last", [False, True])
def test_outputs_and_weight_gradients_are_the_grouped_convolutions(convs, channels_last):
    grouped, dense = convs
    x, g = torch.randn(5, K * CIN, 8, 8, dtype=torch.float64), torch.randn(5, K * COUT, 8, 8, dtype=torch.float64)
    if channels_last:
        dense = dense.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    want, got = reference(grouped, x), dense(x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    (want_grad,), (got_grad,) = torch.autograd.grad(want, grouped.weight, g), torch.autograd.grad(got, dense.weight, g)
    assert got_grad.shape == grouped.weight.shape
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-12, atol=1e-12)


def test_a_members_non_finite_weights_and_gradient_stay_in_its_block(convs):
    grouped, dense = convs
    x = torch.randn(5, K * CIN, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        dense.weight[MEMBER] = float("nan")
    out = dense(x)
    assert out[:, MEMBER].isnan().all()
    torch.testing.assert_close(out[:, OTHERS], reference(grouped, x)[:, OTHERS], rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        dense.weight.copy_(grouped.weight)
    g = torch.randn(5, K * COUT, 8, 8, dtype=torch.float64)
    g[:, MEMBER] = float("inf")  # a diverged member's gradient
    (got,) = torch.autograd.grad(dense(x), dense.weight, g)
    (want,) = torch.autograd.grad(reference(grouped, x), grouped.weight, g)
    assert not got[MEMBER].isfinite().any()
    torch.testing.assert_close(got[OTHERS], want[OTHERS], rtol=1e-12, atol=1e-12)


def test_an_input_that_needs_a_gradient_is_refused(convs):
    """Its input gradient would mix the members' gradients: only a network's first convolution takes this form."""
    _, dense = convs
    with pytest.raises(RuntimeError, match="first convolution"):
        dense(torch.randn(2, K * CIN, 8, 8, dtype=torch.float64, requires_grad=True))


def test_a_pack_with_it_holds_the_grouped_packs_state_and_each_members_function():
    models = []
    for seed in range(K):
        torch.manual_seed(seed)
        models.append(get_model("convnet_bn", 10, 3).double().eval())
    grouped, dense = Pack(models).double().eval(), Pack(models, "block_diagonal").double().eval()
    assert sum(isinstance(m, BlockDiagonalConv2d) for m in dense.modules()) == 1
    assert {n: t.shape for n, t in dense.state_dict().items()} == {n: t.shape for n, t in grouped.state_dict().items()}
    x = torch.randn(K, 4, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        out = dense(x.transpose(0, 1).reshape(4, K * 3, 32, 32))
        for k, model in enumerate(models):  # each member's output is its own model's
            torch.testing.assert_close(out[k], model(x[k]), rtol=1e-10, atol=1e-12)
            solo = get_model("convnet_bn", 10, 3).double().eval()
            solo.load_state_dict(dense.member_state(k))
            torch.testing.assert_close(solo(x[k]), model(x[k]))


def test_an_unknown_form_is_refused_in_one_line_naming_the_choices():
    with pytest.raises(ValueError, match="first_conv='dense'; choose one of: grouped, block_diagonal"):
        Pack([get_model("convnet", 10, 3)] * 2, "dense")
    with pytest.raises(ValueError, match="first_conv='dense'; choose one of: auto, grouped, block_diagonal"):
        RunConfig(arch="convnet", dataset="fashionmnist", loss="ce", first_conv="dense")
