"""Every loss's default hyperparameters, pinned to where they come from: the paper's (or its authors' code's,
or the benchmark's) setting, or, where the paper tunes the value per task, lossnb's own choice, which the
catalogue (describe) must then say is ours."""
import pytest

import lossnb.losses as L

FROM_THE_SOURCE = {
    "label_smoothing": ({"eps": 0.1, "convention": "uniform"}, "Szegedy et al. 2016, Sec. 7: eps = 0.1 spread over all K classes"),
    "focal": ({"gamma": 2.0}, "Lin et al. 2017: gamma = 2 works best"),
    "poly1": ({"epsilon": 1.0}, "the benchmark's Poly-1 (epsilon = 1), the form Leng et al. 2022 call Poly-1"),
    "polyn": ({"epsilons": (1.0,)}, "Poly-1 written as a one-term Poly-N"),
    "gce": ({"q": 0.7}, "Zhang & Sabuncu 2018: q = 0.7"),
    "sce": ({"alpha": 0.1, "beta": 1.0}, "Wang et al. 2019, CIFAR-10: alpha = 0.1, beta = 1.0"),
    "bitempered": ({"t1": 0.8, "t2": 1.2, "num_iters": 5}, "Amid et al. 2019's code: t1 0.8, t2 1.2, 5 iterations"),
    "flsd53": ({"gamma_low": 5.0, "gamma_high": 3.0, "threshold": 0.2}, "Mukhoti et al. 2020: gamma 5 below p = 0.2, else 3"),
    "logitnorm": ({"tau": 0.04}, "Wei et al. 2022, CIFAR-10: tau = 0.04"),
    "maxsup": ({"alpha_start": 0.1, "alpha_end": 0.2}, "Zhou et al. 2025's code: alpha ramps 0.1 -> 0.2"),
    "mbls": ({"margin": 10.0, "lam": 0.1}, "Liu et al. 2022: margin 10, lambda 0.1"),
    "online_ls": ({"alpha": 0.5, "smoothing": 0.1}, "Zhang et al. 2021: alpha = 0.5; epoch 0 as label smoothing 0.1"),
    "smooth_poly": ({"eps_start": 0.05, "eps_end": 0.15, "poly": 1.0, "logit_penalty": 1e-3},
                    "MLS-Bench's published design 'Adaptive smooth-poly with logit penalty': eps 0.05 + 0.1 t/T, "
                    "Poly-1 weight 1 for C <= 50, logit penalty 1e-3"),
    "arcface": ({"s": 64.0, "m": 0.5, "easy_margin": False}, "Deng et al. 2019: s = 64, m = 0.5; the authors' code's "
                "default easy_margin = False"),
}
# the defaults of the implementation the deep-ml loss library ships (cvqluu's Angular-Penalty-Softmax-Losses),
# where the paper's setting differs: the catalogue must say so
FROM_THE_DEEP_ML_LIBRARY = {
    "cosface": {"s": 30.0, "m": 0.4},
    "sphereface": {"s": 64.0, "m": 1.35},
}
LOSSNBS_CHOICE = {  # the paper tunes these per task, or the loss is lossnb's
    "confidence_penalty": {"beta": 0.1},
    "dual_focal": {"gamma": 5.0},
    "logit_penalty": {"beta": 5e-4},
    "margin": {"m": 1.0},
    "capped_ce": {"p_cap": 0.9, "sharpness": 10.0},
    "selfshaped_ls": {"eps": 0.1},
    "complement_ls": {"eps": 0.1},
}
NO_HYPERPARAMETERS = {"ce", "mae", "sparsemax", "entmax15"}


def test_every_loss_is_in_exactly_one_table():
    tables = [set(FROM_THE_SOURCE), set(LOSSNBS_CHOICE), NO_HYPERPARAMETERS, set(FROM_THE_DEEP_ML_LIBRARY)]
    assert set().union(*tables) == set(L.available())
    assert sum(len(t) for t in tables) == len(L.available())


@pytest.mark.parametrize("name", sorted(FROM_THE_SOURCE))
def test_defaults_are_the_sources(name):
    assert L.registry.resolve_hparams(name, {}) == FROM_THE_SOURCE[name][0], FROM_THE_SOURCE[name][1]


@pytest.mark.parametrize("name", sorted(LOSSNBS_CHOICE))
def test_lossnbs_own_defaults_say_so(name):
    assert L.registry.resolve_hparams(name, {}) == LOSSNBS_CHOICE[name]
    d = L.describe(name)
    text = " ".join([d["paper"], d["summary"]] + [p["doc"] for p in d["params"].values()])
    assert "lossnb" in text or "is ours" in text, name


@pytest.mark.parametrize("name", sorted(NO_HYPERPARAMETERS))
def test_losses_without_hyperparameters(name):
    assert L.registry.resolve_hparams(name, {}) == {}


@pytest.mark.parametrize("name", sorted(FROM_THE_DEEP_ML_LIBRARY))
def test_deep_ml_defaults_say_where_they_come_from(name):
    assert L.registry.resolve_hparams(name, {}) == FROM_THE_DEEP_ML_LIBRARY[name]
    assert "deep-ml" in L.describe(name)["summary"]


def test_each_catalogue_entry_has_its_anchor_and_an_export_that_parses():
    import ast

    from lossnb import catalogue

    for name in L.available():
        text = catalogue.entry(name)
        assert f'id="{catalogue.anchor(name)}"' in text and f"href=\"#{catalogue.anchor(name)}\"" in catalogue.index_html()
        code = text.split("```python\n", 1)[1].split("\n```", 1)[0]
        assert "def compute_loss(logits, targets, config)" in code
        ast.parse(code)
