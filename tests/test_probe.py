"""What `auto` resolves to on a CPU: the fastest measured candidate among those the given settings leave, bf16
only where its step agrees with fp32's, measured once per machine and model shape; pinned settings are kept
and never probed; the choice is recorded in config.json."""
import json

import pytest
import torch

from lossnb.trainer import environment, probe

CPU = torch.device("cpu")
RATES = {("fp32", False): 100.0, ("fp32", True): 150.0, ("bf16", False): 300.0, ("bf16", True): 200.0}


def fake_rates(tmp_path, monkeypatch, rate_of, agrees: bool) -> list[tuple]:
    """bare_step_rate as rate_of(precision, channels_last, pack, first_conv) says, each call recorded as (arch,
    precision, channels_last, pack, compiled, first_conv), and trainer_step_rate likewise, recorded as ("trainer",
    arch, precision, channels_last, pack, compiled, stored_channels, first_conv); bf16 agreeing with fp32 or not;
    the cache in tmp_path."""
    monkeypatch.setenv("LOSSNB_CACHE", str(tmp_path / "cache"))
    calls = []

    def rate(arch, classes, channels, head, precision, channels_last, pack=1, compiled=False, first_conv="grouped"):
        calls.append((arch, precision, channels_last, pack, compiled, first_conv))
        return rate_of(precision, channels_last, pack, first_conv)

    def trainer_rate(arch, classes, channels, head, precision, channels_last, pack=1, compiled=False,
                     stored_channels=None, first_conv="grouped"):
        calls.append(("trainer", arch, precision, channels_last, pack, compiled, stored_channels, first_conv))
        return rate_of(precision, channels_last, pack, first_conv)

    monkeypatch.setattr(probe, "bare_step_rate", rate)
    monkeypatch.setattr(probe, "trainer_step_rate", trainer_rate)
    monkeypatch.setattr(probe, "bf16_agrees", lambda *a: agrees)
    return calls


@pytest.fixture
def fake_machine(tmp_path, monkeypatch):
    # a pack's block-diagonal first convolution loses here
    return fake_rates(tmp_path, monkeypatch, lambda precision, layout, pack, form:
                      RATES[(precision, layout)] / (2 if form == "block_diagonal" else 1), True)


def resolve(precision="auto", channels_last="auto", arch="convnet"):
    return environment.resolve_execution(precision, channels_last, CPU, arch, 10, 3, "linear", say=lambda _: None)


def test_auto_takes_the_fastest_measured_candidate_once_per_machine_and_shape(fake_machine):
    assert resolve() | {"probe_rates": None} == {"precision": "bf16", "channels_last": False, "probe_rates": None,
                                                  "first_conv": "grouped", "chosen_by": "bare-step probe on this machine"}
    assert len(fake_machine) == 4
    resolve()
    assert len(fake_machine) == 4  # cached
    resolve(arch="resnet20")
    assert len(fake_machine) == 8  # another model shape is measured


def test_a_pinned_setting_is_kept_and_auto_chooses_among_what_it_leaves(fake_machine):
    assert resolve(precision="fp32") | {"probe_rates": None} == {
        "precision": "fp32", "channels_last": True, "probe_rates": None, "first_conv": "grouped",
        "chosen_by": "bare-step probe on this machine"}
    assert resolve(channels_last="on")["precision"] == "bf16" and resolve(channels_last="on")["channels_last"]
    calls = len(fake_machine)
    assert resolve("fp32", "off") == {"precision": "fp32", "channels_last": False, "first_conv": "grouped",
                                      "chosen_by": "settings"}
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


# a BatchNorm network whose solo step is fastest in NCHW and whose packs are fastest in channels_last
BY_PACK = {1: {("fp32", False): 180.0, ("fp32", True): 90.0}, 2: {("fp32", False): 150.0, ("fp32", True): 260.0}}


@pytest.fixture
def layout_by_pack(tmp_path, monkeypatch):
    return fake_rates(tmp_path, monkeypatch, lambda precision, layout, pack, form:
                      BY_PACK[pack][(precision, layout)] / (2 if form == "block_diagonal" else 1), False)


def test_auto_for_a_pack_is_the_fastest_setting_of_the_packed_step(layout_by_pack):
    def chosen(pack):
        e = environment.resolve_execution("fp32", "auto", CPU, "convnet_bn", 10, 3, "linear", say=lambda _: None,
                                          pack=pack)
        return e["channels_last"]

    assert chosen(1) is False and chosen(2) is True
    assert sorted({pack for *_, pack, _, _ in layout_by_pack}) == [1, 2]  # each pack size measured on its own
    calls = len(layout_by_pack)
    assert chosen(1) is False and chosen(2) is True and len(layout_by_pack) == calls  # both cached


# a pack whose dense block-diagonal first convolution is faster (as convnet_bn's on an AVX-512 CPU); solo: one form
FORMS = {("fp32", True, "grouped"): 100.0, ("fp32", True, "block_diagonal"): 130.0,
         ("fp32", False, "grouped"): 90.0, ("fp32", False, "block_diagonal"): 80.0}


@pytest.fixture
def dense_first(tmp_path, monkeypatch):
    return fake_rates(tmp_path, monkeypatch, lambda precision, layout, pack, form: FORMS[(precision, layout, form)],
                      False)


def test_a_packs_first_convolution_is_measured_in_both_forms_and_the_faster_taken(dense_first):
    def resolve_pack(pack, first_conv="auto", channels_last="auto", device=CPU):
        return environment.resolve_execution("auto", channels_last, device, "convnet_bn", 10, 3, "linear",
                                             say=lambda _: None, pack=pack, first_conv=first_conv)

    chosen = resolve_pack(2)
    assert (chosen["channels_last"], chosen["first_conv"]) == (True, "block_diagonal")
    assert set(chosen["probe_rates"]) == {"fp32/nchw", "fp32/channels_last", "fp32/nchw/block_diagonal",
                                          "fp32/channels_last/block_diagonal"}
    assert resolve_pack(2, channels_last="off")["first_conv"] == "grouped"  # the faster form in the layout given
    assert resolve_pack(2, first_conv="grouped")["first_conv"] == "grouped"  # a pinned form is kept
    assert resolve_pack(1)["first_conv"] == "grouped"  # a solo run: one group, nothing to choose
    assert {call[-1] for call in dense_first if call[3] == 1} == {"grouped"}
    calls = len(dense_first)
    pinned = environment.resolve_execution("fp32", "on", CPU, "convnet_bn", 10, 3, "linear", say=lambda _: None,
                                           pack=2, first_conv="block_diagonal")
    assert pinned == {"precision": "fp32", "channels_last": True, "first_conv": "block_diagonal",
                      "chosen_by": "settings"} and len(dense_first) == calls  # all pinned: nothing measured
    cuda = resolve_pack(2, device=torch.device("cuda"))
    assert cuda["first_conv"] == "grouped" and len(dense_first) == calls  # on a GPU the grouped kernel, unmeasured


def test_the_arrangement_times_each_pack_in_the_setting_it_would_train_in(layout_by_pack):
    # lossnb's own step is timed (not the bare one), in the pack's own choice, not the solo one
    probe.arrangement_rates("convnet_bn", 10, 3, "linear", "fp32", "auto", 2, cores=1, stored_channels=1)
    assert layout_by_pack[-1] == ("trainer", "convnet_bn", "fp32", True, 2, False, 1, "grouped")
    probe.arrangement_rates("convnet_bn", 10, 3, "linear", "fp32", "off", 2, cores=1)
    assert layout_by_pack[-1] == ("trainer", "convnet_bn", "fp32", False, 2, False, None, "grouped")  # pinned: kept
    probe.arrangement_rates("convnet_bn", 10, 3, "linear", "fp32", "off", 2, cores=1, compiled=True)
    assert layout_by_pack[-1] == ("trainer", "convnet_bn", "fp32", False, 2, True, None, "grouped")  # compiled
    probe.arrangement_rates("convnet_bn", 10, 3, "linear", "fp32", "off", 2, cores=1, first_conv="block_diagonal")
    assert layout_by_pack[-1][-1] == "block_diagonal"  # a pinned form of the first convolution is kept


def test_resumed_runs_keep_the_setting_they_began_in(monkeypatch):
    from lossnb.trainer import RunConfig
    from lossnb.trainer.loop import resumed_execution

    cfgs = [RunConfig(arch="convnet_bn", dataset="fashionmnist", loss=loss, device="cpu") for loss in ("ce", "focal")]
    data = type("Data", (), {"num_classes": 10, "in_channels": 1})()
    began = {"precision": "fp32", "channels_last": True, "chosen_by": "bare-step probe on this machine"}
    assert resumed_execution(cfgs, [None, None], CPU, data) is None  # a fresh start: resolved anew
    assert resumed_execution(cfgs, [{"execution": began}, {"execution": began}], CPU, data) == began
    other = {**began, "channels_last": False}
    with pytest.raises(ValueError, match="began in different settings .*fp32/channels_last, fp32/nchw"):
        resumed_execution(cfgs, [{"execution": began}, {"execution": other}], CPU, data)
    # a checkpoint from before the first convolution had two forms began grouped
    dense = {**began, "first_conv": "block_diagonal"}
    with pytest.raises(ValueError, match="fp32/channels_last, fp32/channels_last/block_diagonal"):
        resumed_execution(cfgs, [{"execution": began}, {"execution": dense}], CPU, data)
    grouped = {**began, "first_conv": "grouped"}
    assert resumed_execution(cfgs, [{"execution": began}, {"execution": grouped}], CPU, data) == began
    asked = []  # checkpoints from before settings were recorded: auto as it was resolved then, for one run
    monkeypatch.setattr("lossnb.trainer.environment.resolve_execution",
                        lambda *a, **k: asked.append(k.get("pack", 1)) or other)
    assert resumed_execution(cfgs, [{"rows": []}, {"rows": []}], CPU, data) == other and asked == [1]


# aggregate img/s of (runs per pack, packs at a time) on a 2-core machine: a small network that gains from packs
PACKED = {(1, 1): 15_000, (1, 2): 16_000, (2, 1): 14_000, (2, 2): 15_000, (4, 1): 24_000, (4, 2): 21_000,
          (8, 1): 19_000, (8, 2): 18_000, (16, 1): 17_000, (16, 2): 17_500}


@pytest.fixture
def packed_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSNB_CACHE", str(tmp_path / "cache"))
    calls = []

    def rates(arch, classes, channels, head, precision, channels_last, pack, cores, compiled=False,
              stored_channels=None, first_conv="auto"):
        assert stored_channels == 1  # FashionMNIST's gray images: the step crops one channel, repeated after
        calls.append((pack, compiled) if compiled else pack)
        return PACKED[(pack, 1)], PACKED[(pack, 2)]

    monkeypatch.setattr(probe, "arrangement_rates", rates)
    return calls


def test_the_grid_takes_the_fastest_measured_pack_size_and_process_count(packed_machine):
    from lossnb.grid import arrangement
    from lossnb.trainer import RunConfig

    cfg = RunConfig(arch="convnet_bn", dataset="fashionmnist", loss="ce", image_prep="resize-rgb", device="cpu")
    said = []
    assert arrangement(cfg, None, None, say=said.append) == (4, 1)
    assert packed_machine == [1, 2, 4, 8, 16]
    assert "packs of 4, 1 at a time" in said[-1] and "1.60x" in said[-1]  # 24,000 / 15,000
    assert arrangement(cfg, None, None, say=said.append) == (4, 1) and len(packed_machine) == 5  # cached
    assert arrangement(cfg, 2, None, say=said.append) == (2, 2)  # a given pack size: only the processes measured
    assert arrangement(cfg, 8, 2, say=said.append) == (8, 2)  # both given: kept, nothing measured
    assert packed_machine[5:] == [2]


def test_compiled_runs_have_their_arrangement_measured_compiled_and_kept_apart(packed_machine):
    from lossnb.grid import arrangement
    from lossnb.trainer import RunConfig

    eager = RunConfig(arch="convnet_bn", dataset="fashionmnist", loss="ce", image_prep="resize-rgb", device="cpu")
    compiled = RunConfig(**{**eager.to_dict(), "compile": True})
    said = []
    arrangement(eager, None, None, say=said.append)
    assert packed_machine == [1, 2, 4, 8, 16] and "compiled" not in said[-1]
    arrangement(compiled, None, None, say=said.append)  # not the eager choice from the cache: measured compiled
    assert packed_machine[5:] == [(k, True) for k in (1, 2, 4, 8, 16)] and "convnet_bn compiled at" in said[-1]
    arrangement(compiled, None, None, say=said.append)
    arrangement(eager, None, None, say=said.append)
    assert len(packed_machine) == 10  # each cached under its own key


def test_a_dry_run_measures_nothing_and_takes_a_cached_choice_or_one_run_at_a_time(packed_machine):
    from lossnb.grid import arrangement
    from lossnb.trainer import RunConfig

    cfg = RunConfig(arch="convnet_bn", dataset="fashionmnist", loss="ce", device="cpu")
    assert arrangement(cfg, None, None, measure=False, say=lambda _: None) == (1, None)
    assert packed_machine == []
    arrangement(cfg, None, None, say=lambda _: None)
    assert arrangement(cfg, None, None, measure=False, say=lambda _: None) == (4, 1)


def test_a_reading_is_the_best_of_its_repeats_after_the_warm_up(monkeypatch):
    """Steps that take 10 ms, save the first WARMUP_STEPS (slow) and one repeat's steps (slowed down by a busy
    machine): the reading is the undisturbed repeat's rate."""
    monkeypatch.setattr(probe, "STEPS", 100)  # the reading's own length (the test suite shortens it)
    clock = {"t": 0.0, "n": 0}

    def step():
        clock["n"] += 1
        slow = clock["n"] <= probe.WARMUP_STEPS or probe.WARMUP_STEPS + probe.STEPS < clock["n"] <= \
            probe.WARMUP_STEPS + 2 * probe.STEPS
        clock["t"] += 0.05 if slow else 0.01

    monkeypatch.setattr(probe.time, "perf_counter", lambda: clock["t"])
    assert probe.steady_rate(step, 128) == pytest.approx(128 / 0.01)
    assert clock["n"] == probe.WARMUP_STEPS + probe.REPEATS * probe.STEPS


def test_a_first_step_that_compiles_does_not_shorten_the_windows(monkeypatch):
    """A compiled step's first call takes 30 s, the others 10 ms: the windows still hold STEPS steps each."""
    monkeypatch.setattr(probe, "STEPS", 100)
    clock = {"t": 0.0, "n": 0}

    def step():
        clock["n"] += 1
        clock["t"] += 30.0 if clock["n"] == 1 else 0.01

    monkeypatch.setattr(probe.time, "perf_counter", lambda: clock["t"])
    assert probe.steady_rate(step, 128) == pytest.approx(128 / 0.01)
    assert clock["n"] == probe.WARMUP_STEPS + probe.REPEATS * probe.STEPS
    monkeypatch.setattr(probe, "STEPS", 1)  # the shortest reading: one warm-up step, nothing to estimate from
    clock["n"] = 0
    assert probe.steady_rate(step, 128) == pytest.approx(128 / 0.01)


@pytest.mark.parametrize("stored", [1, 3])
def test_the_arrangement_times_lossnbs_own_step_batch_after_batch_in_the_setting_given(monkeypatch, stored):
    """trainer_step_rate reads PackRun.step, the step a grid's runs train with (crops, every member's loss, the
    trainer's SGD), over the batches of an epoch's plan in turn, in the precision and memory format given, on
    images of the channels the step will crop (gray repeated after, or colour)."""
    from lossnb.trainer.state import PackRun

    steps, original = [], PackRun.step

    def step(self, batch, config, start=None):
        steps.append((self, batch, start, self.train_crops.images.shape[1]))
        return original(self, batch, config, start)

    def reading(timed, images):
        before = [p.detach().clone() for p in steps[-1][0].params]  # the plan's epoch ran already: a run exists
        for _ in range(10):
            timed()
        run = steps[-1][0]
        assert all(not torch.equal(a, b) for a, b in zip(before, run.params))  # each weight tensor trained
        reading.images, reading.run = images, run
        return 1.0

    monkeypatch.setattr(PackRun, "step", step)
    monkeypatch.setattr(probe, "steady_rate", reading)
    probe.trainer_step_rate("convnet_bn", 10, 3, "linear", "bf16", True, pack=2, stored_channels=stored)
    timed = steps[-10:]
    assert [start for _, _, start, _ in timed] == [128 * (i % 8) for i in range(10)]  # 8 batches, cycled
    assert {batch for _, batch, _, _ in timed} == {128} and reading.images == 2 * 128
    assert (reading.run.precision, reading.run.channels_last, reading.run.k) == ("bf16", True, 2)
    assert {channels for *_, channels in steps} == {stored}  # gray images cropped as one channel


@pytest.mark.slow
def test_the_arrangement_is_the_fastest_of_the_rates_it_measured(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSNB_CACHE", str(tmp_path))
    choice = probe.best_arrangement("convnet_bn", 10, 3, "linear", "fp32", True, cores=2, packs=(1, 2),
                                    say=lambda _: None)
    entry = next(v for k, v in json.loads((tmp_path / "probe.json").read_text()).items()
                 if k.startswith("arrangement"))
    assert set(entry["rates"]) == {"1 x 1", "1 x 2", "2 x 1", "2 x 2"}
    fastest = max(entry["rates"], key=entry["rates"].get)
    assert f"{choice['pack']} x {choice['workers']}" == fastest
