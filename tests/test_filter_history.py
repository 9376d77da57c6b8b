"""The filters' history: conv1 snapshots kept in the run folder, thinned, read while written, replayed."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexgui.cli import main
from alexgui.engine.events import KernelSnapshot
from alexgui.engine.store.filter_history import (
    FilterHistoryError,
    forget_after,
    history_folder,
    read_snapshot,
    snapshot_files,
    snapshots,
    write_snapshot,
)
from alexgui.engine.store.rundir import RunDir
from alexgui.engine.training.control import TrainControl
from alexgui.engine.training.loop import train
from alexgui.engine.understand.filter_animation import caption_lines, save_gif
from tests.helpers import make_dataset, tiny_config

TOWERS = [0] * 48 + [1] * 48


def kernels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.01, (96, 3, 11, 11)).astype(np.float32)


def test_a_snapshot_reads_back_as_written(tmp_path: Path) -> None:
    k = kernels(0)
    path = write_snapshot(tmp_path, 1234, 3, k, TOWERS)
    assert path.name == "step-0000001234.npz" and path.stat().st_size < 80_000  # float16: 70 kB
    [ref] = snapshots(tmp_path)
    snap = read_snapshot(ref)
    assert (snap.step, snap.epoch, snap.towers) == (1234, 3, TOWERS)
    np.testing.assert_allclose(snap.kernels, k, rtol=1e-3, atol=1e-6)
    with pytest.raises(ValueError, match="towers"):
        write_snapshot(tmp_path, 1, 0, k, TOWERS[:10])


def test_thinning_bounds_the_count_and_keeps_the_start_and_the_recent_past(tmp_path: Path) -> None:
    k = kernels(1)
    for step in range(0, 3000, 10):  # 300 snapshots, at most 24 kept
        write_snapshot(tmp_path, step, 0, k, TOWERS, keep=24)
    steps = [r.step for r in snapshot_files(history_folder(tmp_path))]
    assert len(steps) <= 24 and steps[0] == 0 and steps[-1] == 2990
    gaps = np.diff(steps)
    assert gaps[0] > gaps[-1], "the past should be coarser than the present"


def test_a_damaged_or_vanished_snapshot_is_named(tmp_path: Path) -> None:
    write_snapshot(tmp_path, 5, 0, kernels(2), TOWERS)
    [ref] = snapshots(tmp_path)
    ref.path.write_bytes(b"not an npz")
    with pytest.raises(FilterHistoryError, match="step-0000000005.npz: not a filter snapshot"):
        read_snapshot(ref)
    ref.path.unlink()
    with pytest.raises(FilterHistoryError, match="no such file"):
        read_snapshot(ref)


def test_snapshots_are_read_while_another_thread_writes_them(tmp_path: Path) -> None:
    done = threading.Event()
    problems: list[str] = []

    def writer() -> None:
        for step in range(200):
            write_snapshot(tmp_path, step, 0, kernels(step % 5), TOWERS, keep=16)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    reads = 0
    while not done.is_set() or reads == 0:
        for ref in snapshots(tmp_path):
            try:
                read_snapshot(ref)
                reads += 1
            except FilterHistoryError as e:
                if "no such file" not in str(e):  # thinned between listing and reading: expected
                    problems.append(str(e))
    thread.join()
    assert reads > 0 and problems == []
    assert len(snapshot_files(history_folder(tmp_path))) <= 16


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[KernelSnapshot]]:
    root = tmp_path_factory.mktemp("history")
    cfg = tiny_config(make_dataset(root / "data", classes=2, train_per_class=4, val_per_class=1), epochs=2)
    cfg.data.resize, cfg.data.crop = 73, 64
    events = list(train(cfg, RunDir.create(root / "run", cfg), TrainControl(snapshot_seconds=1e9)))
    return root / "run", [e for e in events if isinstance(e, KernelSnapshot)]


def test_a_training_run_keeps_one_snapshot_per_kernel_snapshot(trained: tuple[Path, list[KernelSnapshot]]) -> None:
    run, logged = trained
    files = snapshot_files(history_folder(run))
    # The start, then each epoch's end (2 steps an epoch): a frame per epoch even when the clock says none.
    assert [r.step for r in files] == [e.step for e in logged] == [0, 2, 4]
    last = read_snapshot(files[-1])
    from alexgui.engine.store.checkpoint import load_checkpoint

    ckpt = load_checkpoint(RunDir(run).last_checkpoint)
    conv1 = torch.cat([ckpt.tensors["model.towers.0.conv1.weight"], ckpt.tensors["model.towers.1.conv1.weight"]])
    np.testing.assert_allclose(last.kernels, conv1.numpy(), rtol=2e-3, atol=1e-5)
    assert last.towers == TOWERS
    # The snapshot's scores are the logged ones (float16 storage changes them by less than 0.01).
    line = caption_lines(last)
    assert line[0] == "step 4 · 2 epochs done" and line[1].startswith("tower 0: colour specificity")


def test_a_run_from_before_snapshots_shows_its_checkpoints(trained: tuple[Path, list[KernelSnapshot]],
                                                          tmp_path: Path) -> None:
    import shutil

    run, _ = trained
    old = tmp_path / "old"
    shutil.copytree(run, old)
    shutil.rmtree(old / "filters")
    refs = snapshots(old)
    assert [r.step for r in refs][-1] == 4 and all(r.from_checkpoint for r in refs)  # last, and best where earlier
    snap = read_snapshot(refs[0])
    assert snap.kernels.shape == (96, 3, 11, 11) and snap.towers == TOWERS


def test_a_resumed_run_forgets_the_steps_it_redoes(tmp_path: Path) -> None:
    for step in (0, 10, 20, 30):
        write_snapshot(tmp_path, step, 0, kernels(step), TOWERS)
    forget_after(tmp_path, 10)
    assert [r.step for r in snapshot_files(history_folder(tmp_path))] == [0, 10]


def test_the_gif_has_one_frame_per_snapshot(trained: tuple[Path, list[KernelSnapshot]], tmp_path: Path) -> None:
    run, _ = trained
    refs = snapshots(run)
    out = tmp_path / "f.gif"
    assert save_gif(refs, out) == len(refs) == 3
    with Image.open(out) as gif:
        assert gif.n_frames == 3 and gif.size[0] > 500


def test_the_command_line_writes_a_gif_and_a_frame(trained: tuple[Path, list[KernelSnapshot]], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run, _ = trained
    assert main(["filters", "--run", str(run), "--out", str(tmp_path / "a.gif")]) == 0
    assert "3 frame(s), steps 0 to 4" in capsys.readouterr().out
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == 3
    assert main(["filters", "--run", str(run), "--out", str(tmp_path / "b.gif"), "--step", "2"]) == 0
    with Image.open(tmp_path / "b.gif") as gif:
        assert gif.n_frames == 2
    assert main(["filters", "--run", str(run), "--out", str(tmp_path / "f.png"), "--step", "3"]) == 0
    assert "step 2 of" in capsys.readouterr().out
    with Image.open(tmp_path / "f.png") as png:
        assert png.format == "PNG"
    assert main(["filters", "--run", str(run), "--out", str(tmp_path / "f.jpg")]) == 2
    assert "must end in .gif" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["filters", "--run", str(empty), "--out", str(tmp_path / "e.gif")]) == 2
    assert "no filter snapshots" in capsys.readouterr().err


def test_a_truncated_snapshot_is_named_and_left_out_of_the_gif(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for step in (0, 1, 2):
        write_snapshot(tmp_path, step, 0, kernels(step), TOWERS)
    damaged = snapshot_files(history_folder(tmp_path))[1].path
    damaged.write_bytes(damaged.read_bytes()[:5000])  # a zip cut short: BadZipFile inside numpy
    with pytest.raises(FilterHistoryError, match="not a filter snapshot"):
        read_snapshot(snapshot_files(history_folder(tmp_path))[1])
    assert main(["filters", "--run", str(tmp_path), "--out", str(tmp_path / "h.gif")]) == 0
    captured = capsys.readouterr()
    assert "2 frame(s)" in captured.out and "skipped" in captured.err and "step-0000000001.npz" in captured.err
    assert main(["filters", "--run", str(tmp_path), "--out", str(tmp_path / "filters")]) == 2  # not .gif/.png
    (tmp_path / "out.png").mkdir()
    assert main(["filters", "--run", str(tmp_path), "--out", str(tmp_path / "out.png")]) == 2
    assert "cannot write it" in capsys.readouterr().err


def test_thinning_needs_room_for_three(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 3"):
        write_snapshot(tmp_path, 0, 0, kernels(0), TOWERS, keep=2)


def test_a_resumed_run_drops_the_frames_of_the_steps_it_redoes(trained: tuple[Path, list[KernelSnapshot]],
                                                              tmp_path: Path) -> None:
    import shutil

    run, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    write_snapshot(copy, 7, 3, kernels(7), TOWERS)  # a frame of steps lost when the run was killed
    cfg = RunDir.open(copy).config()
    cfg.train.epochs = 3
    list(train(cfg, RunDir.open_for_writing(copy), TrainControl(snapshot_seconds=1e9), resume=True))
    assert [r.step for r in snapshot_files(history_folder(copy))] == [0, 2, 4, 6]
