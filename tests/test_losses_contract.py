"""The loss contract: registry, errors, limits to cross-entropy, numerics, gradcheck and standalone export."""
import ast

import pytest
import torch
import torch.nn.functional as F

import lossnb.losses as L

REQUIRED = {
    "ce", "label_smoothing", "focal", "poly1", "polyn", "mae", "confidence_penalty", "logit_penalty",
    "flsd53", "dual_focal", "logitnorm", "maxsup", "gce", "sce", "bitempered", "sparsemax", "entmax15",
    "margin", "online_ls",
}


def cfg(c, epoch=0, total=10):
    return {"num_classes": c, "epoch": epoch, "total_epochs": total}


def batch(n=12, c=5, seed=0, dtype=torch.float64, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(n, c, generator=g, dtype=torch.float64) * scale).to(dtype)
    return z, torch.randint(0, c, (n,), generator=g)


def test_every_required_loss_is_registered_and_documented():
    assert REQUIRED <= set(L.available())
    for name in L.available():
        d = L.describe(name)
        assert d["paper"] and d["formula"] and d["summary"]
        for p in d["params"].values():
            assert p["domain"]


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("logits,targets,match", [
    (torch.randn(4), torch.zeros(4, dtype=torch.long), r"2-D \(N, C\).*\(4,\)"),
    (torch.randn(2, 4, 3), torch.zeros(2, dtype=torch.long), r"2-D.*\(2, 4, 3\)"),
    (torch.ones(4, 3, dtype=torch.long), torch.zeros(4, dtype=torch.long), "floating point.*int64"),
    (torch.randn(4, 3), torch.zeros(4), "integer tensor.*float32"),
    (torch.randn(4, 3), torch.zeros(5, dtype=torch.long), r"shape \(4,\).*\(5,\)"),
    (torch.randn(4, 3), torch.tensor([0, 1, 3, 2]), r"target 3 is outside \[0, 3\)"),
    (torch.randn(4, 3), torch.tensor([0, -1, 2, 2]), r"target -1 is outside \[0, 3\)"),
])
def test_bad_inputs_are_named(logits, targets, match):
    with pytest.raises(ValueError, match=match):
        L.get("ce")(logits, targets, cfg(3))


def test_config_mismatch_and_missing_keys_are_named():
    z, t = batch(c=5, dtype=torch.float32)
    with pytest.raises(ValueError, match="num_classes=7 but logits have 5"):
        L.get("ce")(z, t, cfg(7))
    with pytest.raises(ValueError, match="missing 'total_epochs'"):
        L.get("ce")(z, t, {"num_classes": 5, "epoch": 0})


def test_unknown_loss_lists_the_choices():
    with pytest.raises(ValueError, match=r"unknown loss 'focall'.*focal.*label_smoothing"):
        L.get("focall")


@pytest.mark.parametrize("name,hparams,match", [
    ("focal", {"gamma": -1.0}, r"gamma=-1.0 is outside its domain \(gamma >= 0\)"),
    ("label_smoothing", {"eps": 1.0}, r"eps=1.0 is outside its domain \(0 <= eps < 1\)"),
    ("poly1", {"epsilon": "x"}, r"epsilon='x' is not a number; its domain is epsilon >= -1"),
    ("label_smoothing", {"eps": -0.1}, "eps=-0.1"),
    ("label_smoothing", {"convention": "both"}, "convention='both'"),
    ("poly1", {"epsilon": -2.0}, "epsilon >= -1"),
    ("gce", {"q": 0.0}, "0 < q <= 1"),
    ("logitnorm", {"tau": 0.0}, "tau > 0"),
    ("focal", {"gamma": float("nan")}, "gamma=nan is not a finite number"),
    # an int beyond a float's range: named, cut to one line, never an OverflowError
    ("focal", {"gamma": 10**400}, r"gamma=1000000000000000000000000000000000000000\.\.\. \(401 characters\) is not "
                                  "a finite number"),
    ("label_smoothing", {"eps": -10**400}, r"is not a finite number; its domain is 0 <= eps < 1"),
    ("focal", {"gamma": "2"}, "gamma='2'"),
    ("bitempered", {"t1": 1.5}, "0 < t1 <= 1"),
    ("focal", {"alpha": 0.25}, r"no hyperparameter 'alpha'; its hyperparameters are: gamma"),
])
def test_out_of_domain_hyperparameters_are_named(name, hparams, match):
    with pytest.raises(ValueError, match=match):
        L.get(name, **hparams)


# ---------------------------------------------------------------- limits that reduce to cross-entropy

@pytest.mark.parametrize("name,hparams", [
    ("focal", {"gamma": 0.0}),
    ("flsd53", {"gamma_low": 0.0, "gamma_high": 0.0}),
    ("dual_focal", {"gamma": 0.0}),
    ("poly1", {"epsilon": 0.0}),
    ("polyn", {"epsilons": [0.0, 0.0]}),
    ("label_smoothing", {"eps": 0.0}),
    ("label_smoothing", {"eps": 0.0, "convention": "others"}),
    ("confidence_penalty", {"beta": 0.0}),
    ("logit_penalty", {"beta": 0.0}),
    ("margin", {"m": 0.0}),
    ("mbls", {"lam": 0.0}),
    ("maxsup", {"alpha_start": 0.0, "alpha_end": 0.0}),
    ("sce", {"alpha": 1.0, "beta": 0.0}),
    ("bitempered", {"t1": 1.0, "t2": 1.0}),
    ("online_ls", {"alpha": 1.0}),
])
def test_limit_is_cross_entropy(name, hparams):
    z, t = batch()
    torch.testing.assert_close(L.get(name, **hparams)(z, t, cfg(5)), F.cross_entropy(z, t))


def test_gce_tends_to_cross_entropy_as_q_goes_to_zero():
    z, t = batch()
    torch.testing.assert_close(L.get("gce", q=1e-7)(z, t, cfg(5)), F.cross_entropy(z, t), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- gradients and numerics

@pytest.mark.parametrize("name", sorted(REQUIRED | {"mbls"}))
def test_gradcheck_float64(name):
    z, t = batch(n=6, c=4, seed=3)
    hparams = {"num_iters": 60} if name == "bitempered" else {}
    loss = L.get(name, **hparams)
    if loss.spec.stateful:  # gradcheck calls the loss many times: hold the state fixed after the first call
        loss(z, t, cfg(4))
        frozen = loss.state_dict()

        def fn(x):
            loss.load_state_dict({k: (v.clone() if torch.is_tensor(v) else v) for k, v in frozen.items()})
            return loss(x, t, cfg(4))
    else:
        def fn(x):
            return loss(x, t, cfg(4))
    assert torch.autograd.gradcheck(fn, (z.clone().requires_grad_(),), eps=1e-6, atol=1e-5)


def _extreme_logits(n, c, seed):
    g = torch.Generator().manual_seed(seed)
    signs = torch.where(torch.rand(n, c, generator=g) < 0.5, -1.0, 1.0)
    return signs * 1e4 * torch.rand(n, c, generator=g).clamp_min(0.5)


@pytest.mark.parametrize("name", L.available())
@pytest.mark.parametrize("c", [2, 10, 1000])
def test_finite_for_extreme_logits_and_any_class_count(name, c):
    z = _extreme_logits(8, c, seed=c).requires_grad_()
    t = torch.randint(0, c, (8,), generator=torch.Generator().manual_seed(1))
    t[0] = z[0].argmax()  # one confidently right sample, the rest mostly confidently wrong
    loss = L.get(name)(z, t, cfg(c))
    (grad,) = torch.autograd.grad(loss, z)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()


@pytest.mark.parametrize("name", L.available())
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_logits_are_computed_in_float32(name, dtype):
    z32, t = batch(n=16, c=10, dtype=torch.float32, scale=8.0)
    z = z32.to(dtype).requires_grad_()
    loss = L.get(name)(z, t, cfg(10))
    (grad,) = torch.autograd.grad(loss, z)
    assert loss.dtype == torch.float32
    assert grad.dtype == dtype and torch.isfinite(grad.float()).all()
    # same value as float32 logits holding the same (rounded) numbers
    reference = L.get(name)(z.detach().float(), t, cfg(10))
    torch.testing.assert_close(loss, reference)


# ---------------------------------------------------------------- standalone export

def _exec_export(source):
    tree = ast.parse(source)
    imported = {a.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for a in node.names} | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"torch", "torch.nn.functional", "math"}, imported
    namespace = {}
    exec(compile(source, "custom_loss.py", "exec"), namespace)
    return namespace["compute_loss"]


@pytest.mark.parametrize("name", L.available())
def test_export_is_standalone_and_gives_the_library_values(name):
    compute_loss = _exec_export(L.export_source(name))
    ours = L.get(name)
    for epoch in range(3):  # several epochs so that schedules and state are exercised
        for step in range(2):
            z, t = batch(n=10, c=6, seed=10 * epoch + step, dtype=torch.float32, scale=3.0)
            a, b = z.clone().requires_grad_(), z.clone().requires_grad_()
            la, lb = ours(a, t, cfg(6, epoch, 3)), compute_loss(b, t, cfg(6, epoch, 3))
            assert torch.equal(la, lb)
            assert torch.equal(torch.autograd.grad(la, a)[0], torch.autograd.grad(lb, b)[0])


def test_export_binds_the_hyperparameters():
    compute_loss = _exec_export(L.export_source("focal", gamma=0.5))
    z, t = batch(dtype=torch.float32)
    assert torch.equal(compute_loss(z, t, cfg(5)), L.get("focal", gamma=0.5)(z, t, cfg(5)))
    assert not torch.equal(compute_loss(z, t, cfg(5)), L.get("focal", gamma=2.0)(z, t, cfg(5)))


def test_stateful_loss_state_round_trips_through_state_dict():
    ours, copy = L.get("online_ls"), L.get("online_ls")
    for epoch in range(2):
        z, t = batch(n=30, c=3, seed=epoch, dtype=torch.float32, scale=4.0)
        ours(z, t, cfg(3, epoch, 4))
    copy.load_state_dict(ours.state_dict())
    z, t = batch(n=30, c=3, seed=9, dtype=torch.float32)
    assert torch.equal(ours(z, t, cfg(3, 2, 4)), copy(z, t, cfg(3, 2, 4)))


# ---------------------------------------------------------------- the contract on every call, and in the export

def test_the_target_range_is_checked_on_every_call_not_only_the_first():
    loss, z = L.get("ce"), torch.randn(4, 3)
    loss(z, torch.tensor([0, 1, 2, 1]), cfg(3))
    for bad, named in (([0, -100, 2, 1], -100), ([0, 1, 3, 1], 3)):  # -100: torch's ignore_index, not contract
        with pytest.raises(ValueError, match=f"target {named} is outside"):
            loss(z, torch.tensor(bad), cfg(3))
    with pytest.raises(ValueError, match="target -1 is outside"):  # a retry after an error is checked too
        loss(z, torch.tensor([-1, 0, 0, 0]), cfg(3))
    empty = loss(torch.randn(0, 3), torch.zeros(0, dtype=torch.long), cfg(3))  # an empty batch is no error
    assert torch.is_tensor(empty)


@pytest.mark.parametrize("name", L.available())
@pytest.mark.parametrize("dtype", [torch.int32, torch.uint8, torch.int16])
def test_targets_of_any_integer_dtype_give_the_int64_values(name, dtype):
    z, t = batch(n=10, c=5, dtype=torch.float32)
    want = L.get(name)(z, t, cfg(5))
    assert torch.equal(L.get(name)(z, t.to(dtype), cfg(5)), want)


@pytest.mark.parametrize("logits, targets, config, match", [
    (torch.randn(4, 3), torch.tensor([0, 1, 2, 1]), cfg(5), "num_classes=5 but logits have 3"),
    (torch.randn(4), torch.tensor([0, 1, 2, 1]), cfg(3), r"2-D \(N, C\)"),
    (torch.randn(4, 3), torch.tensor([0, -100, 2, 1]), cfg(3), "target -100 is outside"),
    (torch.randn(4, 3), torch.tensor([0.0, 1.0, 2.0, 1.0]), cfg(3), "integer tensor of class ids"),
])
def test_the_exported_compute_loss_checks_what_the_library_checks(logits, targets, config, match):
    compute_loss = _exec_export(L.export_source("label_smoothing"))
    with pytest.raises(ValueError, match=match):
        compute_loss(logits, targets, config)
    with pytest.raises(ValueError, match=match):
        L.get("label_smoothing")(logits, targets, config)


# ---------------------------------------------------------------- our designs: gradients of every order

@pytest.mark.parametrize("name, hparams", [("capped_ce", {"p_cap": 0.9, "sharpness": 10.0}),
                                           ("complement_ls", {"eps": 0.3})])
def test_gradcheck_of_our_designs(name, hparams):
    """selfshaped_ls is left out on purpose: its wrong-class target is a stop-gradient of the model's own
    probabilities, so its gradient is by design not the derivative of its value, which is what gradcheck
    compares against (its gradient is checked against its closed form in test_losses_reference.py)."""
    z, t = batch(n=6, c=4, seed=5)
    loss = L.get(name, **hparams)
    assert torch.autograd.gradcheck(lambda x: loss(x, t, cfg(4)), (z.clone().requires_grad_(),), eps=1e-6,
                                    atol=1e-5)
    assert torch.autograd.gradgradcheck(lambda x: loss(x, t, cfg(4)), (z.clone().requires_grad_(),), eps=1e-6,
                                        atol=1e-5)


def test_complement_ls_on_an_empty_batch_is_nan_like_cross_entropy():
    z, t = torch.randn(0, 5, requires_grad=True), torch.zeros(0, dtype=torch.long)
    value = L.get("complement_ls")(z, t, cfg(5))
    assert torch.isnan(value) and torch.isnan(F.cross_entropy(z, t))
    value.backward()
    assert z.grad.shape == (0, 5)


@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_sort_based_losses_refuse_non_finite_logits_by_name(name, bad):
    z, t = batch(dtype=torch.float32)
    z[1, 2] = bad
    with pytest.raises(ValueError, match=f"{name} needs finite logits"):
        L.get(name)(z, t, cfg(5))
    with pytest.raises(ValueError, match=f"{name} needs finite logits"):  # and so does its export
        _exec_export(L.export_source(name))(z, t, cfg(5))


def test_every_stateful_loss_passes_its_own_check():
    """`lossnb losses check` tries several class counts: each is a run of its own for a stateful loss."""
    from lossnb.losses.check import check_loss

    for name in L.available():
        if L.spec(name).stateful:
            failed = [c for c in check_loss(name) if not c.passed]
            assert not failed, f"{name}: {failed}"


def test_online_ls_refuses_state_of_another_class_count():
    loss = L.get("online_ls")
    loss(torch.randn(8, 10), torch.randint(0, 10, (8,)), {"num_classes": 10, "epoch": 0, "total_epochs": 2})
    with pytest.raises(ValueError, match="keeps soft labels for 10 classes and got logits of 4"):
        loss(torch.randn(8, 4), torch.randint(0, 4, (8,)), {"num_classes": 4, "epoch": 0, "total_epochs": 2})
