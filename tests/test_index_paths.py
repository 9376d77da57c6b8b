"""Retrieval indexes on disk, used the way people do (issue 12): from another folder, moved with their
model, saved over another tool's folder (refused), after a killed save, with unreadable queries."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alexgui import cli
from alexgui.engine.inference import retrieval as R
from alexgui.engine.inference import sources
from tests.explore_helpers import MeanColourPredictor, write_colour_folder


class FilePredictor(MeanColourPredictor):
    """The stand-in predictor, named by a model file the way a user names one (a relative path)."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source


def _index_with_relative_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    work = tmp_path / "work"
    write_colour_folder(work / "gallery", per_class=2)
    (work / "models").mkdir()
    model = work / "models" / "net.safetensors"
    model.write_bytes(b"weights")
    monkeypatch.chdir(work)
    index = R.build_index(FilePredictor("models/net.safetensors"), "gallery")
    out = R.save_index(index, "idx")
    return work / out, model


def test_index_names_its_model_absolutely_and_works_from_another_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, model = _index_with_relative_model(tmp_path, monkeypatch)
    meta = json.loads((folder / "index.json").read_text())
    assert meta["model"]["source"] == str(model)
    assert meta["model"]["source_from_index"] == os.path.join("..", "models", "net.safetensors")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert R.model_source(R.load_index(folder)) == str(model)


def test_index_moved_with_its_model_finds_it_relative_to_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _model = _index_with_relative_model(tmp_path, monkeypatch)
    moved = tmp_path / "moved"
    shutil.move(str(tmp_path / "work"), moved)
    monkeypatch.chdir(tmp_path)
    found = R.model_source(R.load_index(moved / "idx"))
    assert found is not None and Path(found).resolve() == (moved / "models" / "net.safetensors").resolve()


def test_alias_sources_are_kept_as_given(tmp_path: Path) -> None:
    write_colour_folder(tmp_path / "g", per_class=1)
    index = R.load_index(R.save_index(R.build_index(FilePredictor("torchvision"), tmp_path / "g"), tmp_path / "i"))
    assert R.model_source(index) == "torchvision"
    assert "source_from_index" not in index.model


def test_foreign_index_json_is_never_overwritten(tmp_path: Path) -> None:
    write_colour_folder(tmp_path / "g", per_class=1)
    index = R.build_index(MeanColourPredictor(), tmp_path / "g")
    out = tmp_path / "theirs"
    out.mkdir()
    for content in (b'{"name": "another tool", "version": 3}\n', b"[1, 2, 3]", b"{not json"):
        (out / "index.json").write_bytes(content)
        with pytest.raises(R.RetrievalError, match="choose another folder"):
            R.save_index(index, out)
        assert (out / "index.json").read_bytes() == content
        assert sorted(p.name for p in out.iterdir()) == ["index.json"]


def test_a_folder_of_other_files_is_refused_but_a_killed_save_is_not(tmp_path: Path) -> None:
    write_colour_folder(tmp_path / "g", per_class=1)
    index = R.build_index(MeanColourPredictor(), tmp_path / "g")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"mine")
    with pytest.raises(R.RetrievalError, match="holds other files"):
        R.save_index(index, photos)
    assert sorted(p.name for p in photos.iterdir()) == ["holiday.jpg"]
    # What a killed save leaves (a temporary, a feature file never named) does not block the next.
    out = tmp_path / "idx"
    out.mkdir()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = child.pid
    leftovers = [out / f".index.json.tmp-{dead}-00ab", out / f"features-{dead}-00ab.npy"]
    live = out / f"features-{os.getpid()}-ffff.npy"  # a writer still running (here: this process)
    for path in [*leftovers, live]:
        path.write_bytes(b"half")
    R.save_index(index, out)
    assert not any(p.exists() for p in leftovers)
    assert live.exists()
    meta = json.loads((out / "index.json").read_text())
    assert meta["features"].startswith(f"features-{os.getpid()}-")


def test_every_unreadable_query_is_named_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_colour_folder(tmp_path / "g", per_class=2)
    folder = R.save_index(R.build_index(MeanColourPredictor(), tmp_path / "g"), tmp_path / "idx")
    missing, broken = tmp_path / "missing.jpg", tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    feats, errors = R.query_features(MeanColourPredictor(), [missing, broken])
    assert feats.shape == (2, 12) and not feats.any()
    assert errors == ["file not found", "not an image (could not identify format)"]
    monkeypatch.setattr(sources, "load_predictor", lambda spec, device="cpu", **kw: MeanColourPredictor())
    code = cli.main(["neighbours", "--index", str(folder), str(missing), str(broken)])
    out = capsys.readouterr()
    assert code == 1
    assert "0 features" not in out.out + out.err
    assert f"{missing}: ERROR file not found" in out.out
    assert f"{broken}: ERROR not an image (could not identify format)" in out.out


def test_query_features_of_readable_queries_are_unchanged(tmp_path: Path) -> None:
    files = write_colour_folder(tmp_path / "g", per_class=1)
    feats, errors = R.query_features(MeanColourPredictor(), files)
    assert errors == [None, None] and feats.shape == (2, 12) and np.all(feats > 0)


def test_index_command_refuses_a_foreign_index_json_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_colour_folder(tmp_path / "g", per_class=1)
    out = tmp_path / "theirs"
    out.mkdir()
    content = b'{"entries": ["another tool"]}'
    (out / "index.json").write_bytes(content)

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(sources, "load_predictor", no_model)
    code = cli.main(["index", "--model", "torchvision", "--images", str(tmp_path / "g"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "not written by alexgui" in err and len(err.strip().splitlines()) == 1
    assert (out / "index.json").read_bytes() == content
