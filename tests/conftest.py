"""Fixtures shared by the test modules."""
import pytest

from lossnb.trainer import loop, records, train


class Interrupted(Exception):
    """Raised by ``interrupt_training`` right after the checkpoint it waits for is on disk."""


@pytest.fixture
def interrupt_training(monkeypatch):
    """``interrupt_training(cfg, runs_dir, after_epoch)``: train until the checkpoint of ``after_epoch``
    epochs is written, then die as a killed run would; the checkpoint stays for a resume."""
    def run(cfg, runs_dir, after_epoch):
        saved = records.atomic_torch_save

        def save_then_die(obj, path):
            saved(obj, path)
            if obj["epoch"] == after_epoch:
                raise Interrupted

        monkeypatch.setattr(loop.records, "atomic_torch_save", save_then_die)
        try:
            with pytest.raises(Interrupted):
                train(cfg, runs_dir=runs_dir, progress=False)
        finally:
            monkeypatch.setattr(loop.records, "atomic_torch_save", saved)

    return run
