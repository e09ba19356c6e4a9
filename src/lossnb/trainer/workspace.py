"""Where a run's files live while it trains, and the lock that makes one process its only trainer.

    runs/<run path>/                 the finished record (config.json, metrics.csv, summary.json)
    runs/.staging/<run path>/        the record being written: beside its destination, so that publishing
                                     it is one rename on one file system, whatever the checkpoint folder
    runs/.locks/<run path>.lock      an flock held by the process training the run, for as long as it trains
    <checkpoints>/<run path>/epochE.pt  checkpoints of the last two finished epochs (default runs/.checkpoints):
                                     a pack killed while writing its members' checkpoints still has one epoch
                                     that every member has, and resumes from it as the same pack
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only named in annotations: a lock or a path needs no torch
    from .config import RunConfig


BUSY_EXIT = 4  # exit status of `lossnb train` when another process holds (some of) its runs


class RunBusy(RuntimeError):
    """Another process holds the run's lock: it is training it now."""


@dataclasses.dataclass(frozen=True)
class RunFiles:
    record: Path
    staging: Path
    lock: Path
    checkpoints: Path

    def checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch{epoch}.pt"

    def checkpoint_epochs(self) -> set[int]:
        """Epochs (completed) this run has a checkpoint after."""
        if not self.checkpoints.is_dir():
            return set()
        return {int(p.stem[5:]) for p in self.checkpoints.glob("epoch*.pt") if p.stem[5:].isdigit()}

    def prune_checkpoints(self, keep_from: int) -> None:
        for epoch in self.checkpoint_epochs():
            if epoch < keep_from:
                self.checkpoint(epoch).unlink(missing_ok=True)

    def remove_checkpoints(self) -> None:
        """All of the run's checkpoints, and the folders that held only them."""
        self.prune_checkpoints(keep_from=10**9)
        _remove_empty(self.checkpoints, depth=4)

    @staticmethod
    def of(cfg: RunConfig, runs_dir: str | Path, checkpoint_dir: str | Path | None = None) -> "RunFiles":
        runs_dir, path = Path(runs_dir), cfg.run_path()
        checkpoints = Path(checkpoint_dir) if checkpoint_dir else runs_dir / ".checkpoints"
        return RunFiles(runs_dir / path, runs_dir / ".staging" / path, (runs_dir / ".locks" / path).with_suffix(".lock"),
                        checkpoints / path)

    def remove_empty_folders(self) -> None:
        """The record's and staging's folders, where a run that was refused or failed left them empty."""
        for leaf in (self.record, self.staging):
            _remove_empty(leaf.parent, depth=3)  # <task>/<loss>/... up to the protocol's folder, never above

    def check_same_file_system(self) -> None:
        """Staging and record must be one rename apart: checked before training, not after it."""
        self.staging.parent.mkdir(parents=True, exist_ok=True)
        self.record.parent.mkdir(parents=True, exist_ok=True)
        if os.stat(self.staging.parent).st_dev != os.stat(self.record.parent).st_dev:
            raise ValueError(f"{self.staging.parent} and {self.record.parent} are on different file systems; "
                             "a record could not be moved into place in one rename")


def _remove_empty(folder: Path, depth: int) -> None:
    """``folder`` and up to ``depth`` - 1 of its parents, each only while it is empty."""
    for f in [folder, *folder.parents][:depth]:
        try:
            f.rmdir()
        except OSError:  # not empty (another run's files are there) or already gone
            break


def _host_lock(record: Path) -> socket.socket | None:
    """On Linux, a second lock no file operation can defeat: an abstract socket named by the record's absolute
    path, bound while this process lives (deleting .locks/ while a run trains frees no flock for another
    trainer, since this name is still taken). None where it is taken; elsewhere a dummy that always succeeds."""
    if not sys.platform.startswith("linux"):
        return socket.socket()  # flock alone
    name = "\0lossnb-run-" + hashlib.sha256(str(record.resolve()).encode()).hexdigest()[:40]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(name)
    except OSError:
        sock.close()
        return None
    return sock


@contextlib.contextmanager
def run_locks(files: list[RunFiles]):
    """Yields, for each run, whether this process holds its lock. An flock dies with its holder, so a killed
    trainer frees its runs, and a live one (an orphan of a killed grid too) keeps them: a run is never
    trained by two processes at once. The host lock (_host_lock) keeps that true when the lock files are
    deleted under a running trainer."""
    handles = []
    try:
        held = []
        for f in files:
            f.lock.parent.mkdir(parents=True, exist_ok=True)
            handle = open(f.lock, "a+")
            handles.append(handle)
            host = _host_lock(f.record)
            if host is None:
                held.append(False)
                continue
            handles.append(host)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                handle.seek(0)
                handle.truncate()
                handle.write(f"{os.getpid()}\n")
                handle.flush()
                held.append(True)
            except BlockingIOError:
                held.append(False)
        yield held
    finally:
        for handle in handles:
            handle.close()  # closing releases the flock and frees the socket's name


def holder_pid(lock: Path) -> str:
    try:
        return lock.read_text().strip() or "?"
    except OSError:
        return "?"
