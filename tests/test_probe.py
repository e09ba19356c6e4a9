"""What `auto` resolves to on a CPU: the fastest measured candidate among those the given settings leave, bf16
only where its step agrees with fp32's, measured once per machine and model shape; pinned settings are kept
and never probed; the choice is recorded in config.json."""
import json

import pytest
import torch

from lossnb.trainer import environment, probe

CPU = torch.device("cpu")
RATES = {("fp32", False): 100.0, ("fp32", True): 150.0, ("bf16", False): 300.0, ("bf16", True): 200.0}


@pytest.fixture
def fake_machine(tmp_path, monkeypatch):
    """Bare-step rates as given (counted), bf16 agreeing or not as set, the cache in tmp_path."""
    monkeypatch.setenv("LOSSNB_CACHE", str(tmp_path / "cache"))
    calls = []

    def rate(arch, classes, channels, head, precision, channels_last, seconds=probe.PROBE_SECONDS):
        calls.append((arch, precision, channels_last))
        return RATES[(precision, channels_last)]

    monkeypatch.setattr(probe, "bare_step_rate", rate)
    monkeypatch.setattr(probe, "bf16_agrees", lambda *a: True)
    return calls


def resolve(precision="auto", channels_last="auto", arch="convnet"):
    return environment.resolve_execution(precision, channels_last, CPU, arch, 10, 3, "linear", say=lambda _: None)


def test_auto_takes_the_fastest_measured_candidate_once_per_machine_and_shape(fake_machine):
    assert resolve() | {"probe_rates": None} == {"precision": "bf16", "channels_last": False, "probe_rates": None,
                                                  "chosen_by": "bare-step probe on this machine"}
    assert len(fake_machine) == 4
    resolve()
    assert len(fake_machine) == 4  # cached
    resolve(arch="resnet20")
    assert len(fake_machine) == 8  # another model shape is measured


def test_a_pinned_setting_is_kept_and_auto_chooses_among_what_it_leaves(fake_machine):
    assert resolve(precision="fp32") | {"probe_rates": None} == {
        "precision": "fp32", "channels_last": True, "probe_rates": None, "chosen_by": "bare-step probe on this machine"}
    assert resolve(channels_last="on")["precision"] == "bf16" and resolve(channels_last="on")["channels_last"]
    calls = len(fake_machine)
    assert resolve("fp32", "off") == {"precision": "fp32", "channels_last": False, "chosen_by": "settings"}
    assert len(fake_machine) == calls  # nothing measured for a fully pinned run


def test_bf16_is_not_a_candidate_where_its_step_disagrees_with_fp32(fake_machine, monkeypatch):
    monkeypatch.setattr(probe, "bf16_agrees", lambda *a: False)
    choice = resolve()
    assert choice["precision"] == "fp32" and choice["channels_last"] is True
    assert set(choice["probe_rates"]) == {"fp32/nchw", "fp32/channels_last"}


def test_the_bf16_check_compares_real_gradients():
    """On this machine's torch the ConvNet's bf16 step agrees with fp32's; a model whose bf16 forward is wrong
    (its logits negated, as a broken kernel could leave them) does not."""
    assert probe.bf16_agrees("convnet", 10, 3, "linear")

    class Scrambled(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            out = self.model(x)
            return -out if torch.is_autocast_enabled("cpu") else out

    original = probe._model
    try:
        probe._model = lambda *a: Scrambled(original(*a))
        assert not probe.bf16_agrees("convnet", 10, 3, "linear")
    finally:
        probe._model = original


def test_a_damaged_cache_is_measured_again(fake_machine, tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "probe.json").write_text("{not json")
    assert resolve()["precision"] == "bf16"
    assert json.loads((tmp_path / "cache" / "probe.json").read_text())


@pytest.mark.slow
def test_workers_follow_the_measured_aggregate_rate(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSNB_CACHE", str(tmp_path))
    workers = probe.best_workers("convnet", 10, 3, "linear", "fp32", True, cores=2, say=lambda _: None)
    entry = next(v for k, v in json.loads((tmp_path / "probe.json").read_text()).items() if k.startswith("workers"))
    faster = 2 if entry["single_thread_processes_img_s"] > entry["one_process_img_s"] else 1
    assert workers == entry["workers"] == faster
