"""The conv1 structure score (issue 13): noise scores 0, smooth Gabor kernels above 0.8, flat kernels 0;
per tower as the Filters panel and the metrics log show it; logged with each kernel snapshot."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from alexgui.engine.events import KernelSnapshot
from alexgui.engine.model.kernel_scores import kernel_snapshot
from alexgui.engine.store.metrics_log import encode_event, read_events
from alexgui.engine.store.rundir import RunDir
from alexgui.engine.training.control import TrainControl
from alexgui.engine.training.history import RunHistory
from alexgui.engine.training.loop import train
from alexgui.engine.training.narrative import describe_event
from alexgui.engine.understand import kernels as F
from tests.helpers import make_dataset, tiny_config

TOWERS = [i // 48 for i in range(96)]  # as model.kernels("conv1") orders the paper net's: tower 0 first


def noise(n: int = 96, seed: int = 0) -> np.ndarray:
    """The paper's initialisation: independent N(0, 0.01) weights."""
    return np.random.default_rng(seed).normal(0.0, 0.01, (n, 3, 11, 11)).astype(np.float32)


def gabors(n: int = 96, seed: int = 0, wavelengths: tuple[float, float] = (5.0, 11.0)) -> np.ndarray:
    """Smooth oriented edges and bars: a Gabor of random wavelength, orientation and phase (envelope
    sigma half the wavelength) in a random colour mix, on a random flat colour cast per channel."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[-5:6, -5:6].astype(np.float64)
    out = np.empty((n, 3, 11, 11))
    for i in range(n):
        wavelength = rng.uniform(*wavelengths)
        theta, phase = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        along = x * np.cos(theta) + y * np.sin(theta)
        g = np.exp(-(x**2 + y**2) / (2 * (wavelength / 2) ** 2)) * np.cos(2 * np.pi * along / wavelength + phase)
        mix, cast = rng.normal(size=(3, 1, 1)), rng.normal(0, 0.5, size=(3, 1, 1))
        out[i] = 0.01 * (mix * g + cast)
    return out.astype(np.float32)


# ---- the measure --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_white_noise_scores_zero(seed: int) -> None:
    assert abs(F.structure_score(noise(seed=seed))) <= 0.05
    # Per kernel too, on average: -1/(121 - 1) is what removing each channel's mean leaves.
    assert F.structure_scores(noise(seed=seed)).mean() == pytest.approx(-1 / 120, abs=0.01)


def test_smooth_gabor_kernels_score_above_0_8() -> None:
    bank = gabors()
    assert F.structure_score(bank) > 0.8
    scores = F.structure_scores(bank)
    assert scores.min() > 0.6  # even the 5-px stripes (about cos(2π/5) across them)
    assert F.structure_scores(gabors(wavelengths=(7.0, 11.0))).min() > 0.8


def test_score_is_scale_free_and_takes_tensors() -> None:
    bank = gabors(8)
    assert np.allclose(F.structure_scores(bank), F.structure_scores(bank * 1000), atol=1e-5)
    assert np.allclose(F.structure_scores(torch.from_numpy(bank)), F.structure_scores(bank))
    with pytest.raises(ValueError, match="RGB kernels"):
        F.structure_scores(np.zeros((4, 1, 11, 11)))


def test_flat_kernels_score_zero_without_dividing_by_zero() -> None:
    flat = np.zeros((3, 3, 11, 11), np.float32)
    flat[1] = np.array([0.1, -0.3, 0.7], np.float32)[:, None, None]  # constant per channel: nothing left
    flat[2] = 0.013  # constant everywhere, with float rounding in its mean
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        scores = F.structure_scores(flat)
        assert F.structure_score(np.zeros((0, 3, 11, 11))) == 0.0
    assert scores.tolist() == [0.0, 0.0, 0.0]


def test_tower_scores_split_as_the_towers() -> None:
    weights = np.concatenate([noise(48), gabors(48)])
    structure = F.tower_structure(weights, TOWERS)
    assert set(structure) == {0, 1}
    assert structure[0] == pytest.approx(F.structure_score(weights[:48]))
    assert structure[1] == pytest.approx(F.structure_score(weights[48:]))
    assert abs(structure[0]) < 0.05 and structure[1] > 0.8
    assert F.structure_score(weights) == pytest.approx(float(np.median(F.structure_scores(weights))))
    interleaved = [i % 2 for i in range(96)]  # labels, not positions, decide the towers
    assert F.tower_structure(weights, interleaved)[0] == pytest.approx(F.structure_score(weights[0::2]))
    with pytest.raises(ValueError, match="tower labels"):
        F.tower_structure(weights, TOWERS[:10])


# ---- the metrics log ----------------------------------------------------------------------------


def test_snapshot_event_carries_both_scores_per_tower() -> None:
    weights = np.concatenate([noise(48), gabors(48)])
    event = kernel_snapshot(7, 1, torch.from_numpy(weights), TOWERS)
    assert (event.step, event.epoch, event.type) == (7, 1, "kernels")
    assert event.colour_specificity == pytest.approx(list(F.tower_specificity(weights, TOWERS).values()))
    assert event.structure == pytest.approx(list(F.tower_structure(weights, TOWERS).values()))
    assert event.structure_all == pytest.approx(F.structure_score(weights))
    one = kernel_snapshot(0, 0, weights, [0] * 96)  # torchvision's net: one tower
    assert len(one.colour_specificity) == 1 and one.structure == pytest.approx([F.structure_score(weights)])
    assert describe_event(event) == []  # the scores are shown beside the kernels, not as log lines


def _write(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def test_snapshot_round_trips_through_the_log_with_and_without_structure(tmp_path: Path) -> None:
    weights = np.concatenate([noise(48), gabors(48)])
    event = kernel_snapshot(3, 0, weights, TOWERS)
    old = {"type": "kernels", "step": 5, "epoch": 0, "time": 1.0, "colour_specificity": [0.6, 0.7]}
    odd = KernelSnapshot(6, 0, colour_specificity=[0.5, math.nan], structure=[math.nan, 0.2], structure_all=None)
    log = tmp_path / "metrics.jsonl"
    _write(log, [encode_event(event), (json.dumps(old) + "\n").encode(), encode_event(odd)])
    events, problems = read_events(log)
    assert problems == []
    back, without, nan = events
    assert isinstance(back, KernelSnapshot) and back == event
    assert isinstance(without, KernelSnapshot)
    assert without.structure is None and without.structure_all is None and without.colour_specificity == [0.6, 0.7]
    assert isinstance(nan, KernelSnapshot) and nan.structure is not None and math.isnan(nan.structure[0])

    history = RunHistory("run")
    history.add(events)
    assert history.kernel_column("step").tolist() == [3, 5, 6]
    assert history.kernel_column("structure")[0] == pytest.approx(event.structure_all)
    assert history.kernel_column("structure_1")[0] > 0.8 and math.isnan(history.kernel_column("structure_1")[1])
    assert history.kernel_column("colour_1")[1] == pytest.approx(0.7)


def test_history_keeps_snapshots_up_to_a_resumed_checkpoint() -> None:
    from alexgui.engine.events import RunStarted

    history = RunHistory("run")
    history.add([kernel_snapshot(step, 0, noise(), TOWERS) for step in (0, 10, 20)])
    started = RunStarted(10, 0, device="cpu", arch="paper", num_classes=2, class_names=["a", "b"], train_images=4,
                         val_images=2, steps_per_epoch=2, epochs=1, resumed=True)
    history.add([started, kernel_snapshot(10, 0, noise(), TOWERS)])  # the resumed run measures step 10 again
    assert history.kernel_column("step").tolist() == [0, 10]


def test_training_logs_a_snapshot_with_no_one_watching(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", classes=2, train_per_class=4, val_per_class=1)
    cfg = tiny_config(data, epochs=1, max_steps=2, device="cpu")
    cfg.data.resize, cfg.data.crop = 73, 64
    run = RunDir.create(tmp_path / "run", cfg)
    events = list(train(cfg, run, TrainControl(snapshot_seconds=0.0)))  # no on_kernels: headless
    snapshots = [e for e in events if isinstance(e, KernelSnapshot)]
    assert [s.step for s in snapshots] == [0, 1, 2]  # the start, then every step at 0 s apart
    assert all(len(s.colour_specificity) == 2 and s.structure is not None and len(s.structure) == 2 for s in snapshots)
    assert abs(snapshots[0].structure_all or 0.0) < 0.05  # the paper's N(0, 0.01) start is noise
    logged, problems = read_events(tmp_path / "run" / "metrics.jsonl")
    assert problems == [] and [e for e in logged if isinstance(e, KernelSnapshot)] == snapshots


# ---- the Filters panel --------------------------------------------------------------------------


def test_filters_panel_shows_structure_beside_colour_in_a_narrow_dock(qtbot) -> None:  # type: ignore[no-untyped-def]
    import re

    from alexgui.qt.panels.filters import FiltersPanel

    panel = FiltersPanel()
    qtbot.addWidget(panel)
    panel.resize(380, 700)  # the side dock's width at 1280x800
    panel.show()
    qtbot.waitExposed(panel)
    panel.set_kernels(noise(), towers=TOWERS, reset_history=True)  # the run's first snapshot: noise
    assert "structure <b>0.00</b>" in panel.headings[1].text() or "structure <b>-0.01</b>" in panel.headings[1].text()
    panel.set_kernels(np.concatenate([noise(48), gabors(48)]), towers=TOWERS)  # tower 1 has learned edges
    assert panel.structure[1] > 0.8 and abs(panel.structure[0]) < 0.05
    tower1 = panel.headings[1].text()
    assert f"structure <b>{panel.structure[1]:.2f}</b>" in tower1 and "(first snapshot " in tower1
    assert "colour specificity" in tower1 and "Tower 1" in tower1
    assert "(first snapshot" not in panel.headings[0].text()  # tower 0 has not changed: nothing to compare
    assert "structure" in panel.grids[1].tooltip_at(panel.grids[1].tile_position(3))
    assert "Structure" in panel.headings[1].toolTip()

    # Each line of a heading (name, colour, structure) fits the dock whole, and the panel never asks for more.
    assert panel.minimumSizeHint().width() <= 380
    qtbot.waitUntil(lambda: panel.headings[1].width() > 0)
    metrics = panel.headings[1].fontMetrics()
    bold = panel.headings[1].font()
    bold.setBold(True)
    from PySide6.QtGui import QFontMetrics

    for line in tower1.split("<br>"):
        plain = re.sub(r"<[^>]+>", "", line)
        width = max(metrics.horizontalAdvance(plain), QFontMetrics(bold).horizontalAdvance(plain))
        assert width <= panel.headings[1].width(), (plain, width, panel.headings[1].width())
