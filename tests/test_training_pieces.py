"""The pieces around the training loop: the caller's settings are never changed, and one ten-crop
average serves evaluation, the torch predictor and the ONNX predictor; a run says its arithmetic
(bf16 or why not) and hands its schedule the validation set's size."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from alexgui.engine.data.stats import DataStats
from alexgui.engine.data.transforms import Preprocess, mean_over_crops
from alexgui.engine.store.rundir import RunDir
from alexgui.engine.training.loop import train
from tests.helpers import make_dataset, tiny_config


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"))


def test_training_and_resuming_leave_the_callers_config_alone(dataset: Path, tmp_path: Path) -> None:
    cfg = tiny_config(dataset, max_steps=1)
    cfg.data.resize, cfg.data.crop = 72, 64
    before = copy.deepcopy(cfg)
    run = RunDir.create(tmp_path / "run", cfg)
    list(train(cfg, run))
    assert cfg == before  # num_classes was set to the dataset's on the caller's object
    resumed = tiny_config(dataset, max_steps=2)
    resumed.data.resize = 72
    resumed.model.lrn = False  # the checkpoint's network wins on resume, in the run's copy only
    resumed_before = copy.deepcopy(resumed)
    events = list(train(resumed, RunDir.open(tmp_path / "run"), resume=True))
    assert events[-1].type == "finished", events[-1]
    assert resumed == resumed_before
    saved = RunDir.open(tmp_path / "run").config()
    assert saved.model.lrn is True and saved.model.num_classes == 2 and saved.train.max_steps == 2


def test_ten_crops_average_per_image_in_torch_and_numpy() -> None:
    stats = DataStats(mean_image=np.full((72, 72, 3), 100.0, np.float32), pca_eigvals=np.ones(3, np.float32),
                      pca_eigvecs=np.eye(3, dtype=np.float32))
    pre = Preprocess.from_stats(stats, crop=64)
    u8 = torch.randint(0, 255, (3, 72, 72, 3), dtype=torch.uint8)
    centre, n = pre.test_batch(u8, ten_crop=False)
    assert n == 1 and centre.shape == (3, 3, 64, 64)
    crops, n = pre.test_batch(u8, ten_crop=True)
    assert n == 10 and crops.shape == (30, 3, 64, 64)
    # Crop-major rows: image i's crops are rows i, 3 + i, 6 + i, ...
    values = torch.arange(30, dtype=torch.float32).reshape(30, 1)
    expected = torch.tensor([[13.5], [14.5], [15.5]])
    torch.testing.assert_close(mean_over_crops(values, 10), expected)
    np.testing.assert_allclose(mean_over_crops(values.numpy(), 10), expected.numpy())
    assert mean_over_crops(values, 1) is values


def test_a_failure_reads_as_one_sentence() -> None:
    from alexgui.engine.events import Failed
    from alexgui.engine.training.narrative import describe_event

    [(level, text)] = describe_event(Failed(3, 0, message="out of memory. Try a smaller batch size.", checkpoint="c.st"))
    assert level == "error"
    assert text == "Failed at step 3: out of memory. Try a smaller batch size. The last good checkpoint is c.st."


def test_a_run_says_its_precision_and_sizes_its_schedule_guard(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alexgui.engine.events import RunStarted
    from alexgui.engine.store.checkpoint import read_meta
    from alexgui.engine.training import precision

    # A CPU without bf16 instructions: --bf16 trains in fp32, and the run's first line says so.
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    cfg = tiny_config(dataset, epochs=1, bf16=True, lr_resolution=0.05, device="cpu")
    cfg.data.resize, cfg.data.crop = 72, 64
    run = RunDir.create(tmp_path / "run", cfg)
    events = list(train(cfg, run))
    assert events[-1].type == "finished", events[-1]
    [started] = [e for e in events if isinstance(e, RunStarted)]
    assert started.device.endswith("(fp32: this CPU has no bf16 instructions, so --bf16 is not used)")
    # The setting reaches the schedule, and the epoch's end tells it the validation set's size.
    schedule = read_meta(run.last_checkpoint)["schedule"]
    assert schedule["resolution"] == 0.05 and schedule["val_images"] == 4
