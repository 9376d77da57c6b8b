"""Data that changes under alexgui is noticed: the cache's content check, and files that vanish or
change between epochs reported in the run's events, log and metrics (issue 12)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexgui.config import DataConfig
from alexgui.engine.data.cache import content_digest, fingerprint
from alexgui.engine.data.changes import data_changes
from alexgui.engine.data.dataset import prepare_dataset
from alexgui.engine.events import DataChanged, EpochDone, StepDone
from alexgui.engine.store.metrics_log import decode_event, encode_event, read_events
from alexgui.engine.store.rundir import RunDir
from alexgui.engine.training.history import RunHistory
from alexgui.engine.training.loop import train
from alexgui.engine.training.narrative import describe_event
from tests.helpers import make_dataset, tiny_config


def _bmp_dataset(root: Path) -> Path:
    # BMP: the same size whatever the colour, so an edit can keep the byte size.
    for name, colour in (("cats", (200, 0, 0)), ("dogs", (0, 200, 0))):
        (root / name).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (40, 30), colour).save(root / name / f"{i}.bmp")
    return root


def _cfg(root: Path, cache: bool) -> DataConfig:
    return DataConfig(data=str(root), resize=24, cache=cache, val_fraction=0.25)


def _edit_keeping_size_and_mtime(path: Path, colour: tuple[int, int, int]) -> None:
    before = path.stat()
    Image.new("RGB", (40, 30), colour).save(path, format="BMP")
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_same_size_edit_with_restored_mtime_is_not_served_from_the_cache(tmp_path: Path) -> None:
    root, cache_root = _bmp_dataset(tmp_path / "data"), tmp_path / "cache"
    first = prepare_dataset(_cfg(root, cache=True), cache_root)
    edited = root / "dogs" / "1.bmp"
    digest = content_digest(edited)
    _edit_keeping_size_and_mtime(edited, (0, 0, 255))
    assert content_digest(edited) != digest
    second = prepare_dataset(_cfg(root, cache=True), cache_root)
    assert second.cache_file != first.cache_file
    images = second.train if str(edited) in second.train.paths else second.val
    assert tuple(images.get(images.paths.index(str(edited)))[12, 12]) == (0, 0, 255)


def test_content_digest_samples_large_files(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    data = bytearray(os.urandom(1_000_000))
    path.write_bytes(bytes(data))
    digest = content_digest(path)
    data[-1] ^= 0xFF  # in the last 64 KiB: sampled
    path.write_bytes(bytes(data))
    assert content_digest(path) != digest
    assert len(fingerprint([str(path)], [0], 24)) == 64


def test_vanished_file_without_the_cache_is_reported_once_and_left_out(tmp_path: Path) -> None:
    root = _bmp_dataset(tmp_path / "data")
    prepared = prepare_dataset(_cfg(root, cache=False), tmp_path / "cache")
    train = prepared.train
    gone = train.paths[0]
    Path(gone).unlink()
    batches = list(train.batches(np.arange(len(train)), 2))  # an epoch: the worker's decode fails
    assert sum(len(labels) for _, labels in batches) == len(train) - 1
    events = data_changes(prepared, step=3, epoch=0)
    assert len(events) == 1
    event = events[0]
    assert [f["path"] for f in event.files] == [gone]
    assert "file not found" in event.files[0]["reason"]
    assert event.train_images == len(train) - 1 and event.val_images == len(prepared.val)
    assert data_changes(prepared, step=6, epoch=1) == []  # reported once
    assert train.excluded[0]


@pytest.mark.parametrize("cache", [True, False])
def test_files_vanished_or_changed_between_epochs_are_reported(tmp_path: Path, cache: bool) -> None:
    root = _bmp_dataset(tmp_path / "data")
    prepared = prepare_dataset(_cfg(root, cache=cache), tmp_path / "cache")
    train, val = prepared.train, prepared.val
    gone, changed = val.paths[0], train.paths[1]
    Path(gone).unlink()
    Image.new("RGB", (40, 30), (9, 9, 9)).save(changed, format="BMP")
    os.utime(changed, ns=(0, 10**9))
    (event,) = data_changes(prepared, step=4, epoch=0)
    reasons = {f["path"]: f["reason"] for f in event.files}
    assert set(reasons) == {gone, changed}
    assert reasons[gone].startswith("vanished since the pre-flight")
    assert reasons[changed].startswith("changed since the pre-flight")
    assert (event.train_images, event.val_images) == (len(train), len(val) - 1)
    # The vanished file is left out of later batches, cached or not; the changed one stays.
    seen = sum(len(labels) for _, labels in val.batches(np.arange(len(val)), 1))
    assert seen == len(val) - 1
    assert sum(len(labels) for _, labels in train.batches(np.arange(len(train)), 3)) == len(train)


def test_data_changed_is_logged_narrated_and_kept_in_the_history() -> None:
    event = DataChanged(5, 1, files=[{"path": "/d/cats/1.png", "reason": "vanished since the pre-flight"}],
                        train_images=10, val_images=3)
    back = decode_event(json.loads(encode_event(event)))
    assert back == event
    lines = describe_event(back)
    assert lines[0][0] == "warn" and "Data changed in epoch 2: 1 file(s)" in lines[0][1]
    assert "10 training / 3 validation" in lines[0][1]
    assert lines[1] == ("warn", "    /d/cats/1.png: vanished since the pre-flight")
    history = RunHistory("run")
    history.add([back])
    assert history.data_changed == event.files


def test_a_run_reports_a_file_deleted_while_it_trains(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", classes=2, train_per_class=4, val_per_class=1)
    cfg = tiny_config(data, epochs=1, log_every=1)
    cfg.data.cache = False
    cfg.data.resize = 64
    cfg.data.crop = 63
    run = RunDir.create(tmp_path / "run", cfg)
    victim = data / "train" / "class_1" / "003.png"
    events = []
    for event in train(cfg, run):
        events.append(event)
        if isinstance(event, StepDone) and victim.exists():
            victim.unlink()
    kinds = [type(e).__name__ for e in events]
    assert kinds[-1] == "Finished", kinds
    changed = [e for e in events if isinstance(e, DataChanged)]
    assert len(changed) == 1 and changed[0].files[0]["path"] == str(victim)
    assert kinds.index("DataChanged") < kinds.index("EpochDone")
    logged, problems = read_events(run.path)
    assert not problems
    assert [e for e in logged if isinstance(e, DataChanged)] == changed
    assert any(isinstance(e, EpochDone) for e in logged)


def test_fingerprint_checks_its_inputs() -> None:
    with pytest.raises(ValueError, match="2 paths but 1 labels"):
        fingerprint(["a", "b"], [0], 24)


# -- distributed: every rank takes the same number of steps -----------------------------------------


@pytest.mark.parametrize("cache", [True, False])
def test_distributed_training_never_leaves_a_batch_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: bool) -> None:
    from alexgui.engine.data import imageset

    root = _bmp_dataset(tmp_path / "data")
    data = prepare_dataset(_cfg(root, cache=cache), tmp_path / "cache")
    train = data.train
    assert len(train) == 6
    for i in (2, 3):  # the whole second batch vanishes, on this rank only
        os.remove(train.paths[i])
    data_changes(data, step=1, epoch=0)
    assert train.excluded[[2, 3]].all()
    order = np.arange(6)

    def labels_of_batches() -> list[list[int]]:
        return [labels.tolist() for _images, labels in train.batches(order, 2)]

    alone = labels_of_batches()
    assert len(alone) == 2  # one process: the empty batch is simply left out
    monkeypatch.setattr(imageset, "in_lockstep", lambda: True)  # torch.distributed with 2 processes
    together = labels_of_batches()
    assert len(together) == 3 and together[0] == alone[0] and together[2] == alone[1]
    expected = train.labels[[2, 3]].tolist() if cache else alone[0]  # cached pixels, or the last good batch again
    assert together[1] == expected
    train.excluded[:] = False  # without the cache the files themselves fail to decode: the same
    assert len(labels_of_batches()) == 3
    data.val.excluded[:] = True  # validation is no training step: nothing to keep in lockstep
    assert list(data.val.batches(np.arange(len(data.val)), 2)) == []
