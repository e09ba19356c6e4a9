"""Every loss against a second implementation: another library, or the paper's formula written out here.

Values and gradients are compared in float64; the formulas below are transcribed
from the papers / authors' code, deliberately written differently from the library.
Every test runs at three shapes (batch x classes): 16 x 7, 9 x 2 (the smallest class count) and 5 x 1000.
"""
import math

import pytest
import torch
import torch.nn.functional as F

import lossnb.losses as L

SHAPES = [(16, 7), (9, 2), (5, 1000)]
SHAPE = list(SHAPES[0])  # the shape of the running test: set by the fixture below


@pytest.fixture(autouse=True, params=SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def float64_at_each_shape(request):
    """References are compared in float64 (the default is restored for other modules), at every shape."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    SHAPE[:] = request.param
    yield
    torch.set_default_dtype(previous)


def batch(seed=0, n=None, c=None, scale=3.0):
    n, c = n or SHAPE[0], c or SHAPE[1]
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, c, generator=g) * scale).requires_grad_()
    targets = torch.randint(0, c, (n,), generator=g)
    return logits, targets


def config(c=None, epoch=0, total=10):
    return {"num_classes": c or SHAPE[1], "epoch": epoch, "total_epochs": total}


def assert_same_value_and_grad(name, hparams, reference, seed=0, cfg=None, rtol=1e-10, **batch_kw):
    logits, targets = batch(seed, **batch_kw)
    cfg = cfg or config(logits.shape[1])
    ours = L.get(name, **hparams)(logits, targets, cfg)
    (g_ours,) = torch.autograd.grad(ours, logits)
    ref_logits = logits.detach().clone().requires_grad_()
    ref = reference(ref_logits, targets)
    (g_ref,) = torch.autograd.grad(ref, ref_logits)
    torch.testing.assert_close(ours, ref.to(ours.dtype), rtol=rtol, atol=rtol * 1e-2)
    torch.testing.assert_close(g_ours, g_ref, rtol=max(rtol, 1e-8), atol=rtol * 1e-2)


def onehot(t, c):
    return F.one_hot(t, c).to(torch.float64)


def naive_softmax(z):
    e = torch.exp(z - z.max(dim=1, keepdim=True).values)
    return e / e.sum(dim=1, keepdim=True)


# ---------------------------------------------------------------- baselines of the benchmark

def test_ce_matches_the_written_formula():
    assert_same_value_and_grad("ce", {}, lambda z, t: -torch.log(naive_softmax(z)[torch.arange(len(t)), t]).mean())


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.3])
def test_label_smoothing_uniform_matches_timm(eps):
    from timm.loss import LabelSmoothingCrossEntropy

    assert_same_value_and_grad("label_smoothing", {"eps": eps}, LabelSmoothingCrossEntropy(smoothing=eps))


@pytest.mark.parametrize("eps", [0.1, 0.2])
def test_label_smoothing_others_convention_matches_the_written_targets(eps):
    def reference(z, t):
        q = torch.full_like(z, eps / (z.shape[1] - 1))
        q[torch.arange(len(t)), t] = 1 - eps
        return -(q * torch.log(naive_softmax(z))).sum(1).mean()

    assert_same_value_and_grad("label_smoothing", {"eps": eps, "convention": "others"}, reference)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.0])
def test_focal_matches_kornia(gamma):
    from kornia.losses import focal_loss

    # kornia returns the per-class terms (N, C), zero off the target: sum over classes, mean over samples
    assert_same_value_and_grad("focal", {"gamma": gamma},
                               lambda z, t: focal_loss(z, t, alpha=None, gamma=gamma, reduction="none").sum(1).mean())


@pytest.mark.parametrize("epsilon", [-1.0, 0.5, 1.0, 2.0])
def test_poly1_matches_timm(epsilon):
    from timm.loss import PolyCrossEntropy

    # timm computes in float32 internally, hence the float32 tolerance
    assert_same_value_and_grad("poly1", {"epsilon": epsilon}, PolyCrossEntropy(epsilon=epsilon), rtol=1e-6)


def test_polyn_matches_the_written_series():
    eps = [1.0, -0.5, 0.25]

    def reference(z, t):
        p_t = naive_softmax(z)[torch.arange(len(t)), t]
        return (-torch.log(p_t) + sum(e * (1 - p_t) ** (j + 1) for j, e in enumerate(eps))).mean()

    assert_same_value_and_grad("polyn", {"epsilons": eps}, reference)


def test_mae_is_l1_between_softmax_and_onehot():
    def reference(z, t):
        return F.l1_loss(F.softmax(z, 1), onehot(t, z.shape[1]), reduction="sum") / len(t)

    assert_same_value_and_grad("mae", {}, reference)


# ---------------------------------------------------------------- published losses

def test_confidence_penalty_uses_the_categorical_entropy():
    def reference(z, t):
        entropy = torch.distributions.Categorical(logits=z).entropy()
        return F.cross_entropy(z, t) - 0.3 * entropy.mean()

    assert_same_value_and_grad("confidence_penalty", {"beta": 0.3}, reference)


def test_logit_penalty_matches_the_written_formula():
    assert_same_value_and_grad("logit_penalty", {"beta": 1e-2},
                               lambda z, t: F.cross_entropy(z, t) + 1e-2 * (torch.norm(z, dim=1) ** 2).mean())


def test_flsd53_matches_the_authors_per_sample_gamma_choice():
    # Mukhoti et al.'s code: gamma from a per-sample Python loop over the detached p_t
    def reference(z, t):
        logp_t = F.log_softmax(z, 1)[torch.arange(len(t)), t]
        gammas = torch.tensor([5.0 if math.exp(v) < 0.2 else 3.0 for v in logp_t.tolist()])
        return (-(1 - logp_t.exp()) ** gammas * logp_t).mean()

    for seed in range(3):  # scale 3 logits put samples on both sides of 0.2
        assert_same_value_and_grad("flsd53", {}, reference, seed=seed)


def test_dual_focal_matches_the_authors_code():
    def reference(z, t):  # Tao et al.'s DualFocalLoss.forward, mean-reduced
        logp_k = F.log_softmax(z, dim=1)
        softmax_logits = logp_k.exp()
        logp_k = logp_k.gather(1, t.view(-1, 1)).view(-1)
        p_k = logp_k.exp()
        p_j_mask = torch.lt(softmax_logits, p_k.reshape(p_k.shape[0], 1)) * 1
        p_j = torch.topk(p_j_mask * softmax_logits, 1)[0].squeeze()
        return (-1 * (1 - p_k + p_j) ** 5.0 * logp_k).mean()

    assert_same_value_and_grad("dual_focal", {"gamma": 5.0}, reference)


def test_logitnorm_matches_the_authors_code():
    def reference(z, t):
        norms = torch.norm(z, p=2, dim=-1, keepdim=True) + 1e-7
        return F.cross_entropy(torch.div(z, norms) / 0.04, t)

    assert_same_value_and_grad("logitnorm", {"tau": 0.04}, reference)


@pytest.mark.parametrize("epoch", [0, 5, 9])
def test_maxsup_matches_the_authors_code_with_its_ramp_ending_at_the_last_epoch(epoch):
    """The authors' MaxSuppression term; their ramp is begin + (end - begin) * epoch / epochs, lossnb's reaches
    end at the last epoch (epoch / (epochs - 1)): equal at epoch 0, apart by at most (end - begin) / epochs."""
    def reference(z, t, lam):
        return F.cross_entropy(z, t) + lam * (z.topk(1, dim=-1)[0] - z.mean(dim=-1, keepdim=True)).mean()

    lam = 0.1 + 0.1 * epoch / max(1, 10 - 1)
    assert_same_value_and_grad("maxsup", {}, lambda z, t: reference(z, t, lam), cfg=config(epoch=epoch, total=10))
    authors = 0.1 + (0.2 - 0.1) * epoch / 10
    assert abs(lam - authors) <= (0.2 - 0.1) / 10 + 1e-12 and (epoch or lam == authors)


@pytest.mark.parametrize("epoch", [0, 100, 199])
def test_smooth_poly_matches_its_design_written_out(epoch):
    """The published design: smoothed targets (1 - eps) one-hot + eps / C with eps = 0.05 + 0.1 t / T, plus
    (1 - p_y) and 1e-3 times the squared logit norm, each averaged over the batch."""
    def reference(z, t):
        c = z.shape[1]
        eps = 0.05 + 0.1 * epoch / 200
        p = naive_softmax(z)
        q = (1 - eps) * onehot(t, c) + eps / c
        smoothed = -(q * torch.log(p)).sum(dim=1)
        p_y = p[torch.arange(len(t)), t]
        return (smoothed + (1 - p_y) + 1e-3 * (z * z).sum(dim=1)).mean()

    assert_same_value_and_grad("smooth_poly", {}, reference, cfg=config(epoch=epoch, total=200), rtol=1e-9)


def test_margin_matches_the_written_formula():
    def reference(z, t):
        z_t = z[torch.arange(len(t)), t] - 0.7
        others = z.clone()
        others[torch.arange(len(t)), t] = z_t
        return (torch.logsumexp(others, 1) - z_t).mean()

    assert_same_value_and_grad("margin", {"m": 0.7}, reference)


def test_mbls_matches_the_authors_code():
    def reference(z, t):
        max_values = z.max(dim=1).values.unsqueeze(1).repeat(1, z.shape[1])
        return F.cross_entropy(z, t) + 0.1 * F.relu(max_values - z - 2.0).mean()

    assert_same_value_and_grad("mbls", {"margin": 2.0, "lam": 0.1}, reference)


@pytest.mark.parametrize("q", [0.3, 0.7, 1.0])
def test_gce_matches_the_box_cox_formula(q):
    assert_same_value_and_grad("gce", {"q": q},
                               lambda z, t: ((1 - naive_softmax(z)[torch.arange(len(t)), t] ** q) / q).mean())


def test_sce_matches_the_authors_code():
    def reference(z, t):
        ce = F.cross_entropy(z, t)
        pred = torch.clamp(F.softmax(z, dim=1), min=1e-7, max=1.0)
        label = torch.clamp(onehot(t, z.shape[1]), min=1e-4, max=1.0)
        rce = -1 * torch.sum(pred * torch.log(label), dim=1)
        return 0.1 * ce + 1.0 * rce.mean()

    assert_same_value_and_grad("sce", {"alpha": 0.1, "beta": 1.0}, reference)


def _tempered_softmax_by_bisection(z, t):
    """Independent normaliser: bisection on lambda for sum_k exp_t(z_k - lambda) = 1."""
    def exp_t(u):
        return torch.relu(1 + (1 - t) * u) ** (1 / (1 - t))

    # at lo the mass exceeds 1; at hi each of the C terms is at most 1/(1 + (t-1) C)^(1/(t-1)) < 1/C
    lo = z.max(1, keepdim=True).values - 10.0
    hi = z.max(1, keepdim=True).values + z.shape[1] + 10.0
    for _ in range(200):
        mid = (lo + hi) / 2
        too_big = exp_t(z - mid).sum(1, keepdim=True) > 1
        lo, hi = torch.where(too_big, mid, lo), torch.where(too_big, hi, mid)
    return exp_t(z - (lo + hi) / 2)


def _bitempered_reference(z, t, t1, t2):
    p = _tempered_softmax_by_bisection(z, t2)
    y = onehot(t, z.shape[1])
    log_t1 = lambda u: (u ** (1 - t1) - 1) / (1 - t1)  # noqa: E731
    y_safe = y + 1e-300  # y log_t1(y) -> 0 at y = 0
    return (y * (log_t1(y_safe) - log_t1(p)) - (y ** (2 - t1) - p ** (2 - t1)) / (2 - t1)).sum(1).mean()


@pytest.mark.parametrize("t1,t2", [(0.8, 1.2), (0.5, 2.0), (0.9, 1.05)])
def test_bitempered_value_matches_bisection(t1, t2):
    logits, targets = batch(0, scale=2.0)
    ref = _bitempered_reference(logits.detach(), targets, t1, t2)
    converged = L.get("bitempered", t1=t1, t2=t2, num_iters=60)(logits, targets, config())
    torch.testing.assert_close(converged, ref, rtol=1e-9, atol=1e-12)
    # the reference code's 5 fixed-point iterations are close, not exact
    default = L.get("bitempered", t1=t1, t2=t2)(logits, targets, config())
    torch.testing.assert_close(default, ref, rtol=2e-2, atol=1e-3)


@pytest.mark.parametrize("t1,t2", [(0.8, 1.2), (0.5, 2.0)])
def test_bitempered_gradient_matches_finite_differences_of_the_reference(t1, t2):
    logits, targets = batch(1, n=4, c=min(SHAPE[1], 7), scale=2.0)  # 2 x 4 x C reference solves: C at most 7
    z = logits.detach()
    ours = L.get("bitempered", t1=t1, t2=t2, num_iters=60)(logits, targets, config(logits.shape[1]))
    (grad,) = torch.autograd.grad(ours, logits)
    h, numeric = 1e-6, torch.zeros_like(z)
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            dz = torch.zeros_like(z)
            dz[i, j] = h
            numeric[i, j] = (_bitempered_reference(z + dz, targets, t1, t2)
                             - _bitempered_reference(z - dz, targets, t1, t2)) / (2 * h)
    torch.testing.assert_close(grad, numeric, rtol=1e-5, atol=1e-8)


def test_sparsemax_loss_matches_the_entmax_package():
    from entmax import sparsemax_loss

    assert_same_value_and_grad("sparsemax", {}, lambda z, t: sparsemax_loss(z, t).mean())


def test_entmax15_loss_matches_the_entmax_package():
    from entmax import entmax15_loss

    assert_same_value_and_grad("entmax15", {}, lambda z, t: entmax15_loss(z, t).mean())


class _ReferenceOnlineLabelSmoothing:
    """Transcription of the public reference implementation (online-label-smoothing-pt)."""

    def __init__(self, alpha, n_classes, smoothing):
        self.a = alpha
        self.supervise = torch.zeros(n_classes, n_classes).fill_(smoothing / (n_classes - 1))
        self.supervise.fill_diagonal_(1 - smoothing)
        self.update = torch.zeros_like(self.supervise)
        self.idx_count = torch.zeros(n_classes)

    def __call__(self, y_h, y):
        log_p = y_h.log_softmax(dim=-1)
        with torch.no_grad():
            p = log_p.exp()
            mask = torch.eq(p.argmax(dim=-1), y)
            self.idx_count.index_add_(0, y[mask], torch.ones_like(y[mask], dtype=torch.float64))
            self.update.index_add_(1, y[mask], p[mask].swapaxes(-1, -2))
        true_dist = torch.index_select(self.supervise, 1, y).swapaxes(-1, -2)
        soft = torch.mean(torch.sum(-true_dist * log_p, dim=-1))
        return self.a * F.cross_entropy(y_h, y) + (1 - self.a) * soft

    def next_epoch(self):
        self.idx_count[torch.eq(self.idx_count, 0)] = 1
        self.update /= self.idx_count
        self.idx_count.zero_()
        self.supervise = self.update
        self.update = self.update.clone().zero_()


def test_online_label_smoothing_follows_the_reference_across_epochs():
    c = 3  # few classes and confident logits: every class has a correct sample each epoch
    ours, ref = L.get("online_ls", alpha=0.5, smoothing=0.1), _ReferenceOnlineLabelSmoothing(0.5, c, 0.1)
    for epoch in range(3):
        if epoch:
            ref.next_epoch()
        for step in range(2):
            g = torch.Generator().manual_seed(10 * epoch + step)
            targets = torch.arange(12) % c
            logits = torch.randn(12, c, generator=g) + 4.0 * onehot(targets, c)
            a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
            la, lb = ours(a, targets, config(c, epoch, 3)), ref(b, targets)
            torch.testing.assert_close(la, lb, rtol=1e-6, atol=1e-7)
            torch.testing.assert_close(torch.autograd.grad(la, a)[0], torch.autograd.grad(lb, b)[0],
                                       rtol=1e-6, atol=1e-7)
    assert ours.state["epoch"] == 2
    ours.reset()
    assert ours.state == {}


# ---------------------------------------------------------------- lossnb's own loss

@pytest.mark.parametrize("p_cap,beta", [(0.9, 10.0), (0.5, 3.0), (0.99, 50.0)])
def test_capped_ce_matches_its_written_formula(p_cap, beta):
    def reference(z, t):
        p_t = naive_softmax(z).gather(1, t[:, None]).squeeze(1)
        x = beta * (-torch.log(p_t) + math.log(p_cap))
        return (torch.logaddexp(torch.zeros_like(x), x) / beta).mean()  # softplus, without overflow at C = 1000
    assert_same_value_and_grad("capped_ce", {"p_cap": p_cap, "sharpness": beta}, reference, rtol=1e-9)


def test_capped_ce_gradient_is_cross_entropys_times_the_sigmoid_weight():
    logits, targets = batch(3)
    p_cap, beta = 0.8, 7.0
    L.get("capped_ce", p_cap=p_cap, sharpness=beta)(logits, targets, config()).backward()
    p = naive_softmax(logits.detach())
    ce = -torch.log(p.gather(1, targets[:, None]))
    weight = torch.sigmoid(beta * (ce + math.log(p_cap)))
    torch.testing.assert_close(logits.grad, weight * (p - onehot(targets, logits.shape[1])) / len(targets))


def test_capped_ce_limits_hinge_and_cross_entropy():
    logits, targets = batch(4)
    ce = F.cross_entropy(logits, targets, reduction="none")
    hinge = torch.clamp(ce + math.log(0.7), min=0).mean()
    torch.testing.assert_close(L.get("capped_ce", p_cap=0.7, sharpness=1e6)(logits, targets, config()), hinge,
                               rtol=0, atol=1e-6)
    # p_cap -> 1 with a sharp cap: cross-entropy wherever it is not tiny
    torch.testing.assert_close(L.get("capped_ce", p_cap=1 - 1e-9, sharpness=1e4)(logits, targets, config()),
                               ce.mean(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.3])
def test_selfshaped_ls_matches_its_written_formula_and_gradient(eps):
    logits, targets = batch(5)
    p = naive_softmax(logits.detach())
    p_t = p.gather(1, targets[:, None])
    q = eps * p / (1 - p_t)  # the wrong classes in proportion to the model's own, mass eps
    q.scatter_(1, targets[:, None], 1 - eps)

    def reference(z, t):
        return -(q * torch.log(naive_softmax(z))).sum(dim=1).mean()
    assert_same_value_and_grad("selfshaped_ls", {"eps": eps}, reference, seed=5, rtol=1e-9)
    # cross-entropy's gradient form with the shaped target: (p - q) / N
    ours = L.get("selfshaped_ls", eps=eps)(logits, targets, config())
    (g,) = torch.autograd.grad(ours, logits)
    torch.testing.assert_close(g, (p - q) / len(targets))


@pytest.mark.parametrize("name, seed", [("selfshaped_ls", 6), ("complement_ls", 9)])
def test_our_smoothing_designs_are_cross_entropy_at_eps_zero_and_stable_when_confident(name, seed):
    logits, targets = batch(seed)
    torch.testing.assert_close(L.get(name, eps=0.0)(logits, targets, config()),
                               F.cross_entropy(logits, targets))
    c = max(SHAPE[1], 4)  # four confident samples need four classes
    sure = torch.full((4, c), -1e4)
    sure[torch.arange(4), torch.arange(4)] = 1e4
    sure.requires_grad_()
    value = L.get(name, eps=0.1)(sure, torch.arange(4), config(c))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(sure.grad).all()


@pytest.mark.parametrize("eps", [0.1, 0.4])
def test_complement_ls_is_label_smoothing_minus_its_bound(eps):
    """Label smoothing (torch's own) = bound on p_t (a binary cross-entropy with target 1 - a) + pull;
    complement_ls = cross-entropy + the same pull. So their difference is fixed by two torch references."""
    logits, targets = batch(7)
    c = logits.shape[1]
    a = eps * (c - 1) / c
    p_t = naive_softmax(logits.detach()).gather(1, targets[:, None]).squeeze(1)
    bound = F.binary_cross_entropy(p_t, torch.full_like(p_t, 1 - a))
    ls = F.cross_entropy(logits.detach(), targets, label_smoothing=eps)
    ours = L.get("complement_ls", eps=eps)(logits.detach(), targets, config())
    torch.testing.assert_close(ours - F.cross_entropy(logits.detach(), targets), ls - bound)


def test_complement_ls_gradient_is_cross_entropys_on_the_target_plus_a_pull_on_the_rest():
    eps = 0.3
    logits, targets = batch(8)
    ours = L.get("complement_ls", eps=eps)(logits, targets, config())
    (g,) = torch.autograd.grad(ours, logits)
    p = naive_softmax(logits.detach())
    q = p.clone()
    q.scatter_(1, targets[:, None], 0.0)
    q = q / q.sum(dim=1, keepdim=True)  # the wrong-class distribution
    c = logits.shape[1]
    uniform = (1 - onehot(targets, c)) / (c - 1)
    expected = (p - onehot(targets, c) + eps * (c - 1) / c * (q - uniform)) / len(targets)
    torch.testing.assert_close(g, expected)

