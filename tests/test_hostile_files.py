"""Hostile names and special files in a dataset: non-UTF-8 names, FIFOs, sockets, link loops, links
out of the root, duplicates; and cache files that pruning and the next start must find (issue 12)."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexgui.config import DataConfig
from alexgui.engine.data import dataset
from alexgui.engine.data.cache import SUBDIR, prune
from alexgui.engine.data.dataset import prepare_dataset, scan_folder
from alexgui.engine.data.imageio import ImageError, decode_image
from alexgui.engine.data.walk import display_path
from alexgui.engine.events import PreflightReport
from alexgui.engine.store.metrics_log import decode_event, encode_event

POSIX = pytest.mark.skipif(os.name != "posix", reason="POSIX file names and special files")
COLOURS = {"cats": (220, 30, 30), "dogs": (30, 220, 30), "owls": (30, 30, 220)}


def _classes(root: Path, n: int = 9, names: tuple[str, ...] = ("cats", "dogs")) -> Path:
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (40, 30), COLOURS[name]).save(root / name / f"{i:02d}.png")
    return root


def _cfg(root: Path, cache: bool = True) -> DataConfig:
    return DataConfig(data=str(root), resize=24, cache=cache, val_fraction=0.25)


def _all(prepared: dataset.PreparedData) -> list[tuple[str, int]]:
    return [(p, int(label)) for images in (prepared.train, prepared.val) for p, label in zip(images.paths, images.labels)]


def _skipped_json_is_utf8(prepared: dataset.PreparedData) -> None:
    # What preflight.json and the metrics log will hold must encode as UTF-8.
    json.dumps([s.__dict__ for s in prepared.skipped], ensure_ascii=False).encode("utf-8")


def _non_utf8_name(folder: Path, stem: bytes) -> Path:
    name = os.fsdecode(stem)
    try:
        (folder / name).touch()
        (folder / name).unlink()
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system does not store names that are not UTF-8")
    return folder / name


# -- names that are not valid UTF-8 ----------------------------------------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="Linux stores file names as bytes")
def test_non_utf8_file_names_are_used_with_the_cache_on(tmp_path: Path) -> None:
    root, cache_root = _classes(tmp_path / "data"), tmp_path / "cache"
    good = _non_utf8_name(root / "cats", b"caf\xe9.png")
    Image.new("RGB", (40, 30), COLOURS["cats"]).save(good)
    broken = _non_utf8_name(root / "dogs", b"chien\xff.jpg")
    broken.write_bytes(b"not a jpeg")
    first = prepare_dataset(_cfg(root), cache_root)  # raised UnicodeEncodeError before
    assert (str(good), 0) in _all(first)
    assert [(s.path, s.reason) for s in first.skipped] == [
        (str(root / "dogs" / "chien\\xff.jpg"), "not an image (could not identify format)")
    ]
    _skipped_json_is_utf8(first)
    # Both cache files are there, the sidecar holds the name exactly, and the next start reuses it.
    names = sorted(p.suffix for p in (cache_root / SUBDIR).iterdir())
    assert names == [".json", ".u8"]
    sidecar = json.loads(next((cache_root / SUBDIR).glob("*.json")).read_text(encoding="ascii"))
    assert str(good) in sidecar["paths"]
    second = prepare_dataset(_cfg(root), cache_root)
    assert second.cache_file == first.cache_file
    images = first.train if str(good) in first.train.paths else first.val
    assert tuple(images.get(images.paths.index(str(good)))[5, 5]) == COLOURS["cats"]


@pytest.mark.skipif(sys.platform != "linux", reason="Linux stores file names as bytes")
def test_non_utf8_class_folder_is_skipped_with_a_printable_reason(tmp_path: Path) -> None:
    root = _classes(tmp_path / "data", names=("cats", "dogs", "owls"))
    odd = _non_utf8_name(root, b"owl\xe9s")
    os.rename(root / "owls", odd)
    prepared = prepare_dataset(_cfg(root, cache=False), tmp_path / "cache")
    assert prepared.class_names == ["cats", "dogs"]
    assert [s.path for s in prepared.skipped] == [str(root / "owl\\xe9s")]
    assert "not valid UTF-8" in prepared.skipped[0].reason
    _skipped_json_is_utf8(prepared)


@pytest.mark.skipif(sys.platform != "linux", reason="Linux stores file names as bytes")
def test_image_error_and_metrics_log_carry_odd_names(tmp_path: Path) -> None:
    path = _non_utf8_name(tmp_path, b"\xe9t\xe9.png")
    with pytest.raises(ImageError) as caught:
        decode_image(path)
    assert str(caught.value) == f"{tmp_path}/\\xe9t\\xe9.png: file not found"
    str(caught.value).encode("utf-8")  # printable
    # An event holding a raw (surrogate-escaped) name is still written as one valid line.
    event = PreflightReport(0, 0, images_ok=1, skipped=[{"path": str(path), "reason": "x"}])
    line = encode_event(event)
    assert line.endswith(b"\n")
    back = decode_event(json.loads(line))
    assert isinstance(back, PreflightReport) and back.skipped[0]["path"] == str(path)


def test_display_path_shows_bytes() -> None:
    assert display_path("plain/é.png") == "plain/é.png"
    assert display_path(b"caf\xe9.jpg") == "caf\\xe9.jpg"
    assert display_path("caf\udce9.jpg") == "caf\\xe9.jpg"
    assert display_path("odd\ud800") == "odd\\ud800"


# -- special files ---------------------------------------------------------------------------


def _finishes(work: Callable[[], object], seconds: float = 60.0) -> tuple[bool, dict[str, object]]:
    """Run work() in a thread; fail (instead of hanging the suite) if it does not return in time."""
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["value"] = work()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            result["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return thread.is_alive(), result


@POSIX
def test_fifo_in_a_dataset_is_skipped_never_opened(tmp_path: Path) -> None:
    root = _classes(tmp_path / "data")
    fifo = root / "cats" / "pipe.jpg"
    os.mkfifo(fifo)
    hung, result = _finishes(lambda: prepare_dataset(_cfg(root), tmp_path / "cache"))
    if hung:  # release the blocked open() so the thread can end, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("the pre-flight opened a FIFO and waited for a writer")
    assert "error" not in result, result
    prepared = result["value"]
    assert isinstance(prepared, dataset.PreparedData)
    assert [(s.path, s.reason) for s in prepared.skipped] == [
        (str(fifo), "a named pipe (FIFO), not a regular file; not opened")
    ]
    assert len(_all(prepared)) == 18


@POSIX
def test_fifo_given_to_the_decoder_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    hung, result = _finishes(lambda: decode_image(fifo))
    if hung:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("decode_image opened a FIFO and waited for a writer")
    error = result.get("error")
    assert isinstance(error, ImageError) and "named pipe" in error.reason


@POSIX
def test_socket_and_device_are_skipped(tmp_path: Path) -> None:
    root = _classes(tmp_path / "d")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / "cats" / "s.png"))
    except OSError:
        pytest.skip("cannot bind a Unix socket here (path too long?)")
    try:
        (root / "dogs" / "null.png").symlink_to("/dev/null")  # a link out of the root: not followed
        index = scan_folder(root, 0.25, 0)
    finally:
        sock.close()
    reasons = {Path(s.path).name: s.reason for s in index.skipped}
    assert reasons["s.png"] == "a socket, not a regular file; not opened"
    assert reasons["null.png"].startswith("symbolic link out of the dataset folder")
    with pytest.raises(ImageError, match="a character device, not a regular file"):
        decode_image("/dev/null")


# -- links -----------------------------------------------------------------------------------


@POSIX
def test_symlink_loops_do_not_multiply_or_mislabel_images(tmp_path: Path) -> None:
    root = _classes(tmp_path / "data", names=("cats", "dogs", "owls"))
    (root / "cats" / "loop").symlink_to("..")  # the root: every class again, labelled "cats"
    (root / "cats" / "self").symlink_to(".")
    (root / "dogs" / "deeper").mkdir()
    (root / "dogs" / "deeper" / "back").symlink_to("../../dogs")
    (root / "owls" / "cats").symlink_to("../cats")  # another class's folder
    index = scan_folder(root, 0.25, 0)
    samples = index.train + index.val
    assert len(samples) == 27
    for sample in samples:
        assert Path(sample.path).parent.name == index.class_names[sample.label]
    reasons = {s.path: s.reason for s in index.skipped}
    assert set(reasons) == {str(root / p) for p in ("cats/loop", "cats/self", "dogs/deeper/back", "owls/cats")}
    assert reasons.pop(str(root / "owls" / "cats")) == "link into another class (cats); not followed"
    assert all("a folder already included; not followed" in r for r in reasons.values())


@POSIX
def test_links_inside_the_root_are_followed_once_and_links_out_only_when_asked(tmp_path: Path) -> None:
    root = _classes(tmp_path / "data", n=3)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    Image.new("RGB", (40, 30), COLOURS["cats"]).save(outside / "far.png")
    (root / "cats" / "ext").symlink_to(outside)
    (root / "cats" / "again.png").symlink_to(root / "cats" / "00.png")  # the same file twice
    (root / "shared").mkdir()
    Image.new("RGB", (40, 30), COLOURS["dogs"]).save(root / "shared" / "dog.png")
    (root / "dogs" / "more").symlink_to(root / "shared")  # a folder inside the root, not a class
    index = scan_folder(root, 0.34, 0)
    names = sorted(Path(s.path).name for s in index.train + index.val)
    assert names == ["00.png", "00.png", "01.png", "01.png", "02.png", "02.png", "dog.png"]
    reasons = {Path(s.path).name: s.reason for s in index.skipped}
    assert reasons["ext"].startswith(f"symbolic link out of the dataset folder (to {outside})")
    assert reasons["again.png"] == f"the same file as {root / 'cats' / '00.png'}; used once"
    followed = scan_folder(root, 0.34, 0, links_out=True)
    assert "far.png" in {Path(s.path).name for s in followed.train + followed.val}


@POSIX
def test_a_link_into_another_class_never_labels_its_images(tmp_path: Path) -> None:
    root = _classes(tmp_path / "data", n=3)
    (root / "dogs" / "sub").mkdir()
    Image.new("RGB", (40, 30), COLOURS["dogs"]).save(root / "dogs" / "sub" / "deep.png")
    (root / "cats" / "more").symlink_to("../dogs/sub")  # walked before dogs/sub itself
    (root / "cats" / "x.png").symlink_to("../dogs/00.png")
    (root / "cats" / "stash").symlink_to("../.stash")  # inside the root, in no class
    (root / ".stash").mkdir()
    Image.new("RGB", (40, 30), COLOURS["cats"]).save(root / ".stash" / "hidden.png")
    (root / "kittens").symlink_to("dogs/sub")  # a class folder that is a link into another class
    index = scan_folder(root, 0.34, 0)
    samples = index.train + index.val
    assert index.class_names == ["cats", "dogs"]
    assert sorted(s.path for s in samples if index.class_names[s.label] == "dogs") == sorted(
        [str(root / "dogs" / f"{i:02d}.png") for i in range(3)] + [str(root / "dogs" / "sub" / "deep.png")]
    )
    assert all(Path(s.path).parent.name == "cats" for s in samples if s.label == 0)
    reasons = {Path(s.path).name: s.reason for s in index.skipped}
    assert reasons["more"] == "link into another class (dogs); not followed"
    assert reasons["x.png"] == "link into another class (dogs); not followed"
    assert reasons["kittens"] == "link into another class (dogs); not followed"
    assert reasons["stash"].endswith("outside its class folder; not followed")
    assert "sub" not in reasons  # the real folder is never skipped because of a link to it


@POSIX
def test_real_entries_win_over_links_inside_a_class(tmp_path: Path) -> None:
    root = _classes(tmp_path / "data", n=2)
    (root / "cats" / "zz").mkdir()
    Image.new("RGB", (40, 30), COLOURS["cats"]).save(root / "cats" / "zz" / "z.png")
    (root / "cats" / "aa").symlink_to("zz")  # sorts (and was walked) before the real folder
    index = scan_folder(root, 0.5, 0)
    assert str(root / "cats" / "zz" / "z.png") in {s.path for s in index.train + index.val}
    assert {s.path: s.reason for s in index.skipped} == {
        str(root / "cats" / "aa"): f"link to {root / 'cats' / 'zz'}, a folder already included; not followed"
    }


# -- cache files the next start must find ----------------------------------------------------


def test_pruning_finds_image_files_without_their_sidecar(tmp_path: Path) -> None:
    folder = tmp_path / SUBDIR
    folder.mkdir()
    old, young = folder / f"{'a' * 64}.u8", folder / f"{'b' * 64}.u8"
    old.write_bytes(b"\0" * 100)
    young.write_bytes(b"\0" * 100)
    now = time.time()
    os.utime(old, (now - 2 * 3600, now - 2 * 3600))
    removed = prune(tmp_path, now=now)
    assert removed == [old]
    assert not old.exists() and young.exists()  # a young one may be a build writing its sidecar now


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@POSIX
def test_stale_cache_temporaries_are_removed_even_when_the_cache_is_reused(tmp_path: Path) -> None:
    root, cache_root = _classes(tmp_path / "data", n=3), tmp_path / "cache"
    prepare_dataset(_cfg(root), cache_root)
    folder = cache_root / SUBDIR
    dead = folder / f".{'c' * 64}.u8.tmp-{_dead_pid()}-0123abcd"
    mine = folder / f".{'d' * 64}.u8.tmp-{os.getpid()}-0123abcd"
    dead.write_bytes(b"half")
    mine.write_bytes(b"half")
    again = prepare_dataset(_cfg(root), cache_root)
    assert again.cache_file is not None
    assert not dead.exists(), "the temporary of a dead process was left"
    assert mine.exists(), "a temporary whose writer still runs was removed"
    assert np.asarray(again.train.get(0)).shape == (24, 24, 3)


@POSIX
def test_train_follow_links_reaches_the_dataset_walk(tmp_path: Path) -> None:
    """`alexgui train --follow-links` (and [data] follow_links in a config) is how a user asks for
    links out of the folder; without it prepare_dataset skips them."""
    from alexgui.commands.train import add_parser, config_from_args
    from alexgui.config import RunConfig
    from alexgui.engine.data.dataset import prepare_dataset

    root = _classes(tmp_path / "data", n=3)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    Image.new("RGB", (40, 30), COLOURS["cats"]).save(outside / "far.png")
    (root / "cats" / "ext").symlink_to(outside)
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    for flags, expected in (([], False), (["--follow-links"], True)):
        args = parser.parse_args(["train", "--out", str(tmp_path / "run"), "--data", str(root), "--no-cache", *flags])
        cfg = config_from_args(args, RunConfig())
        assert cfg.data.follow_links is expected
        prepared = prepare_dataset(cfg.data, tmp_path / "cache")
        names = {Path(p).name for p in prepared.train.paths + prepared.val.paths}
        assert ("far.png" in names) is expected
