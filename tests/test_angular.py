"""The angular-margin family and the cosine head, against pytorch-metric-learning's ArcFaceLoss, CosFaceLoss and
SphereFaceLoss (which own the class weights and take features: the same weights and features are given to both),
and against the papers' formulas written out here in NumPy, at several shapes, in float64."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossnb.losses as L
from lossnb.models import CosineClassifier, get_model
from lossnb.trainer import RunConfig
from lossnb.trainer.pack import Pack

pml = pytest.importorskip("pytorch_metric_learning.losses")

SHAPES = [(16, 7), (9, 2), (5, 1000)]
DIM = 12


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def features_weights_targets(n, c, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, DIM, generator=g)
    w = torch.randn(DIM, c, generator=g)
    return x, w, torch.randint(0, c, (n,), generator=g)


def ours_on_features(name, hparams, x, w, t):
    """lossnb's loss on the cosines of features x and weights w (a cosine head computed by hand)."""
    cos = F.normalize(x, dim=1) @ F.normalize(w, dim=0)
    return L.get(name, **hparams)(cos, t, L.make_config(w.shape[1]))


def assert_same_as_pml(name, hparams, reference, x, w, t, feature_grad_tangent_only=False):
    reference.W.data = w.clone()
    xr = x.clone().requires_grad_()
    ref = reference(xr, t)
    (gx_ref, gw_ref) = torch.autograd.grad(ref, (xr, reference.W))
    xo, wo = x.clone().requires_grad_(), w.clone().requires_grad_()
    ours = ours_on_features(name, hparams, xo, wo, t)
    gx, gw = torch.autograd.grad(ours, (xo, wo))
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-9)
    if feature_grad_tangent_only:  # the reference's norm factor adds a radial part; compare the rest
        unit = F.normalize(x, dim=1)
        gx, gx_ref = (g - (g * unit).sum(1, keepdim=True) * unit for g in (gx, gx_ref))
    torch.testing.assert_close(gx, gx_ref, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("s,m", [(64.0, 0.5), (30.0, 0.2), (10.0, 1.2)])
def test_arcface_matches_pytorch_metric_learning(shape, s, m):
    x, w, t = features_weights_targets(*shape)
    reference = pml.ArcFaceLoss(num_classes=shape[1], embedding_size=DIM, margin=math.degrees(m), scale=s)
    assert_same_as_pml("arcface", {"s": s, "m": m}, reference, x, w, t)


def test_arcface_past_pi_minus_m_falls_back_as_the_authors_code():
    """A target at an angle beyond pi - m: both take cos(theta) - m sin(m) there (no wrap-around of cos)."""
    x, w, t = features_weights_targets(8, 5, seed=1)
    w[:, t] = -x.T  # every target's weight points away from its feature: theta_t = pi
    m = 1.2
    reference = pml.ArcFaceLoss(num_classes=5, embedding_size=DIM, margin=math.degrees(m), scale=20.0)
    assert_same_as_pml("arcface", {"s": 20.0, "m": m}, reference, x, w, t)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("s,m", [(30.0, 0.4), (64.0, 0.35), (5.0, 0.0)])
def test_cosface_matches_pytorch_metric_learning(shape, s, m):
    x, w, t = features_weights_targets(*shape)
    reference = pml.CosFaceLoss(num_classes=shape[1], embedding_size=DIM, margin=m, scale=s)
    assert_same_as_pml("cosface", {"s": s, "m": m}, reference, x, w, t)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("m", [2, 3, 4])
def test_sphereface_matches_pytorch_metric_learning_on_unit_features(shape, m):
    """pytorch-metric-learning's SphereFace takes integer margins (cos(m theta) by the multiple-angle formula)
    and multiplies by the feature's norm, as the paper's unnormalised features do: unit features make it s psi
    (and the gradient along the feature, which that norm adds, is left out of the comparison)."""
    x, w, t = features_weights_targets(*shape)
    x = F.normalize(x, dim=1)
    reference = pml.SphereFaceLoss(num_classes=shape[1], embedding_size=DIM, margin=m, scale=7.0)
    assert_same_as_pml("sphereface", {"s": 7.0, "m": float(m)}, reference, x, w, t, feature_grad_tangent_only=True)


def written_out(name, cos, t, s, m):
    """The papers' per-sample losses in NumPy, mean over the batch."""
    cos = np.asarray(cos, dtype=np.float64)
    n = len(t)
    theta = np.arccos(np.clip(cos[np.arange(n), t], -1.0, 1.0))
    if name == "sphereface":  # Liu et al. 2017, Eq. 7: psi = (-1)^k cos(m theta) - 2k on [k pi/m, (k+1) pi/m]
        k = np.floor(theta * m / np.pi)
        target = (-1.0) ** k * np.cos(m * theta) - 2 * k
    elif name == "cosface":
        target = np.cos(theta) - m
    else:  # ArcFace, with the authors' fallback past pi - m
        target = np.where(theta + m < np.pi, np.cos(theta + m), np.cos(theta) - m * np.sin(m))
    z = s * cos.copy()
    z[np.arange(n), t] = s * target
    log_norm = np.log(np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1)) + z.max(axis=1)
    return float(np.mean(log_norm - z[np.arange(n), t]))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name,s,m", [("sphereface", 64.0, 1.35), ("sphereface", 30.0, 2.5),
                                      ("cosface", 30.0, 0.4), ("arcface", 64.0, 0.5), ("arcface", 16.0, 2.0)])
def test_values_match_the_papers_formulas(shape, name, s, m):
    x, w, t = features_weights_targets(*shape, seed=2)
    cos = F.normalize(x, dim=1) @ F.normalize(w, dim=0)
    ours = L.get(name, s=s, m=m)(cos, t, L.make_config(shape[1]))
    assert ours.item() == pytest.approx(written_out(name, cos.numpy(), t.numpy(), s, m), rel=1e-9)


@pytest.mark.parametrize("m", [1.35, 2.0, 4.0])
def test_sphereface_target_logit_decreases_over_all_angles(m):
    """The paper's psi extension is what makes a non-integer (or any) m usable: monotone on [0, pi]."""
    theta = torch.linspace(0.01, math.pi - 0.01, 500)
    cos = torch.stack([torch.cos(theta), torch.zeros_like(theta)], dim=1)
    t = torch.zeros(len(theta), dtype=torch.long)
    per_sample = [L.get("sphereface", s=1.0, m=m)(cos[i:i + 1], t[i:i + 1], L.make_config(2)) for i in range(500)]
    assert np.all(np.diff(torch.stack(per_sample).numpy()) > 0)  # the loss grows as the target angle grows


def test_without_margin_each_is_cross_entropy_on_scaled_cosines():
    x, w, t = features_weights_targets(10, 6)
    cos = F.normalize(x, dim=1) @ F.normalize(w, dim=0)
    expected = F.cross_entropy(12.0 * cos, t)
    for name, m in (("arcface", 0.0), ("cosface", 0.0), ("sphereface", 1.0)):
        torch.testing.assert_close(L.get(name, s=12.0, m=m)(cos, t, L.make_config(6)), expected)


@pytest.mark.parametrize("name", ["arcface", "cosface", "sphereface"])
def test_gradcheck_at_interior_angles(name):
    x, w, t = features_weights_targets(6, 4, seed=4)
    cos = (0.9 * F.normalize(x, dim=1) @ F.normalize(w, dim=0)).requires_grad_()
    loss = L.get(name, s=4.0)
    assert torch.autograd.gradcheck(lambda c: loss(c, t, L.make_config(4)), (cos,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name,bad", [("arcface", {"m": math.pi}), ("arcface", {"s": 0.0}),
                                      ("cosface", {"m": -0.1}), ("sphereface", {"m": 0.5})])
def test_out_of_domain_margins_are_refused(name, bad):
    with pytest.raises(ValueError, match="outside its domain"):
        L.get(name, **bad)


# ---------------------------------------------------------------- the head and runs


def test_cosine_head_outputs_cosines_of_feature_and_class_weight():
    torch.manual_seed(0)
    model = get_model("resnet20", 10, 3, head="cosine").eval()
    head = model.fc
    assert isinstance(head, CosineClassifier)
    x = torch.randn(4, 3, 32, 32)
    features = torch.flatten(model.pool(model.stages(model.stem(x))), 1)
    expected = torch.nn.functional.cosine_similarity(features[:, None, :], head.weight[None, :, :], dim=2)
    torch.testing.assert_close(model(x), expected)
    assert model(x).abs().max() <= 1 + 1e-12


@pytest.mark.parametrize("arch", ["convnet", "resnet20", "vgg11_bn", "mobilenetv2"])
def test_cosine_head_replaces_only_the_classifier(arch):
    torch.manual_seed(3)
    linear = get_model(arch, 10, 1)
    torch.manual_seed(3)
    cosine = get_model(arch, 10, 1, head="cosine")
    lin, cos = dict(linear.named_parameters()), dict(cosine.named_parameters())
    assert set(lin) - set(cos) == {next(n for n in reversed(list(lin)) if n.endswith("bias"))}
    for name, p in cos.items():  # same seed, same initial weights, the head's included
        torch.testing.assert_close(p, lin[name])


def test_packed_cosine_heads_compute_each_members_own_cosines():
    models = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        models.append(get_model("convnet", 10, 1, head="cosine").eval())
    pack = Pack(models).eval()
    x = torch.randn(5, 1, 32, 32)
    out = pack(x.repeat(1, 3, 1, 1))
    for k, model in enumerate(models):
        torch.testing.assert_close(out[k], model(x))


def test_a_cosine_loss_on_a_linear_head_is_refused_in_one_line():
    with pytest.raises(ValueError, match="takes cosine logits and head='linear'; set head: cosine"):
        RunConfig(arch="convnet", dataset="fashionmnist", loss="arcface")
    cfg = RunConfig(arch="convnet", dataset="fashionmnist", loss="arcface", head="cosine")
    assert cfg.run_path().parts[1] == "convnet-cosine-fashionmnist"
    assert RunConfig(arch="convnet", dataset="fashionmnist", loss="ce").run_path().parts[1] == "convnet-fashionmnist"


def test_export_says_it_needs_cosine_logits():
    assert "Needs cosine logits" in L.export_source("arcface")
    assert "Needs cosine logits" not in L.export_source("ce")
