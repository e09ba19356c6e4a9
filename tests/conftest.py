"""Fixtures shared by the test modules."""
import os

import pytest

# The probe's steady-state reading takes 100-step windows: seconds per model shape, minutes for ResNets under load.
# The tests that run trainers only need some choice made, so their probe reads 3-step windows (inherited by the
# trainers they start); the probe's own tests set its numbers themselves.
os.environ.setdefault("LOSSNB_PROBE_STEPS", "3")

from lossnb.data.readers import DEBIAN_FASHION_MNIST
from lossnb.trainer import RunConfig, loop, records, train

HAVE_FMNIST = DEBIAN_FASHION_MNIST.is_dir()
needs_fmnist = pytest.mark.skipif(not HAVE_FMNIST, reason="Debian package dataset-fashion-mnist not installed")


@pytest.fixture(scope="session", autouse=True)
def probe_cache(tmp_path_factory):
    """The CPU probe's measurements in a folder of this test session (inherited by the trainers it starts),
    never in the user's cache."""
    os.environ["LOSSNB_CACHE"] = str(tmp_path_factory.mktemp("lossnb-cache"))


class Interrupted(Exception):
    """Raised by ``interrupt_training`` right after the checkpoint it waits for is on disk."""


@pytest.fixture
def interrupt_training(monkeypatch):
    """``interrupt_training(cfg, runs_dir, after_epoch)``: train until the checkpoint of ``after_epoch``
    epochs is written, then die as a killed run would; the checkpoint stays for a resume."""
    def run(cfg, runs_dir, after_epoch, data=None):
        saved = records.atomic_torch_save

        def save_then_die(obj, path):
            saved(obj, path)
            if obj["epoch"] == after_epoch:
                raise Interrupted

        monkeypatch.setattr(loop.records, "atomic_torch_save", save_then_die)
        try:
            with pytest.raises(Interrupted):
                train(cfg, runs_dir=runs_dir, progress=False, data=data)
        finally:
            monkeypatch.setattr(loop.records, "atomic_torch_save", saved)

    return run


def write_synthetic_record(root, loss, seed, best, epochs=2, final=None, protocol="t", arch="convnet",
                           wall_seconds=60.0, pack_size=1, loss_params=None, head="linear", train_gap=None, val_size=None,
                           **summary):
    """A record in the on-disk format the trainer writes (config.json, metrics.csv, summary.json), with the
    numbers given: for tests of the analysis, which reads records only."""
    cfg = RunConfig(arch=arch, dataset="fashionmnist", loss=loss, seed=seed, epochs=epochs, protocol=protocol,
                    loss_params=loss_params or {}, head=head, val_size=val_size)
    run_dir = root / cfg.run_path()
    records.write_json(run_dir / "config.json", {"run": cfg.to_dict(), "follows_200_epoch_protocol": epochs == 200,
                                                 "packing": {"pack_size": pack_size},
                                                 "environment": {"device_name": "test device"}})
    final = best if final is None else final
    rows = [{c: 0.0 for c in records.METRIC_COLUMNS} | {"epoch": e, "test_acc": best - 0.01 * (epochs - 1 - e)}
            for e in range(epochs)]
    rows[-1]["test_acc"] = final
    if train_gap is not None:  # training accuracy this far from test accuracy in every epoch
        for row in rows:
            row["train_acc"] = row["test_acc"] + train_gap
    records.write_metrics(run_dir / "metrics.csv", rows)
    values = {k: 0.0 for k in records.SUMMARY_FIELDS} | {"status": "complete", "best_test_acc": best,
                                                        "final_test_acc": final, "epochs_completed": epochs,
                                                        "wall_seconds": wall_seconds} | summary
    records.write_json(run_dir / "summary.json", values)
    return run_dir
