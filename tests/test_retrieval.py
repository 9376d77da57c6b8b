"""Exact nearest-neighbour search, index files, staleness (engine, no Qt)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from alexgui.engine.inference import retrieval as R
from tests.explore_helpers import MeanColourPredictor, colour_image, write_colour_folder


def _brute_force(gallery: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    d = np.linalg.norm(gallery[None, :, :].astype(np.float64) - queries[:, None, :], axis=2)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(d, order, axis=1)


@pytest.mark.parametrize("chunk", [7, 64, 100000])
def test_search_equals_brute_force(chunk: int) -> None:
    rng = np.random.default_rng(0)
    gallery = np.abs(rng.normal(size=(300, 48))).astype(np.float32)
    queries = np.abs(rng.normal(size=(5, 48))).astype(np.float32)
    idx, dist = R.search(gallery, R.squared_norms(gallery), queries, k=9, chunk=chunk)
    want_idx, want_dist = _brute_force(gallery, queries, 9)
    assert np.array_equal(idx, want_idx)
    assert np.allclose(dist, want_dist, rtol=1e-4, atol=1e-4)


def test_search_caps_k_and_finds_exact_copies() -> None:
    rng = np.random.default_rng(1)
    gallery = rng.normal(size=(4, 8)).astype(np.float32)
    idx, dist = R.search(gallery, R.squared_norms(gallery), gallery[2], k=10)
    assert idx.shape == (1, 4) and idx[0, 0] == 2
    assert dist[0, 0] == pytest.approx(0.0, abs=1e-3)
    assert np.all(np.diff(dist[0]) >= 0)
    with pytest.raises(R.RetrievalError, match="features"):
        R.search(gallery, R.squared_norms(gallery), np.zeros((1, 3), np.float32), k=1)


def _gallery(tmp_path: Path) -> Path:
    root = tmp_path / "gallery"
    write_colour_folder(root, per_class=3)
    (root / "broken.jpg").write_bytes(b"not really a jpeg")
    (root / "notes.txt").write_text("ignored: not an image suffix")
    return root


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_build_save_load_round_trip(tmp_path: Path, dtype: str) -> None:
    root = _gallery(tmp_path)
    predictor = MeanColourPredictor()
    seen = []
    index = R.build_index(predictor, root, progress=lambda d, t: seen.append((d, t)), batch_size=4, dtype=dtype)
    assert len(index) == 6
    assert [Path(s["path"]).name for s in index.skipped] == ["broken.jpg"]
    assert seen[-1] == (7, 7)
    out = R.save_index(index, tmp_path / "idx")
    loaded = R.load_index(out)
    assert loaded.paths == index.paths and loaded.fingerprint == "fake-1"
    assert loaded.storage_dtype == dtype
    assert np.array_equal(loaded.features, index.features)
    meta = json.loads((out / "index.json").read_text())
    assert np.load(out / meta["features"]).dtype == np.dtype(dtype)
    # A query equal to a gallery image finds it first, at distance 0.
    found = R.nearest(loaded, loaded.features[3:4], k=3)[0]
    assert found[0] == (loaded.paths[3], pytest.approx(0.0, abs=1e-3))


def test_saving_again_replaces_the_feature_file(tmp_path: Path) -> None:
    index = R.build_index(MeanColourPredictor(), _gallery(tmp_path))
    out = tmp_path / "idx"
    R.save_index(index, out)
    R.save_index(index, out)
    npys = sorted(p.name for p in out.iterdir() if p.suffix == ".npy")
    assert len(npys) == 1
    assert json.loads((out / "index.json").read_text())["features"] == npys[0]


def test_loading_refuses_pickled_arrays(tmp_path: Path) -> None:
    index = R.build_index(MeanColourPredictor(), _gallery(tmp_path))
    out = R.save_index(index, tmp_path / "idx")
    meta = json.loads((out / "index.json").read_text())
    np.save(out / meta["features"], np.array([{"code": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(R.RetrievalError, match="cannot read the features"):
        R.load_index(out)


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(R.RetrievalError, match="not an index"):
        R.load_index(tmp_path)
    (tmp_path / "index.json").write_text("{oops")
    with pytest.raises(R.RetrievalError, match="index.json: not valid JSON"):
        R.load_index(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"format": R.INDEX_FORMAT, "features": "../evil.npy"}))
    with pytest.raises(R.RetrievalError, match="bad feature file name"):
        R.load_index(tmp_path)


def test_stale_index_is_detected(tmp_path: Path) -> None:
    root = _gallery(tmp_path)
    index = R.load_index(R.save_index(R.build_index(MeanColourPredictor(), root), tmp_path / "idx"))
    assert R.stale_reasons(index, "fake-1") == []
    assert any("different model" in r for r in R.stale_reasons(index, "other-weights"))
    colour_image("red", 99).save(root / "red" / "new.png")
    assert any("1 new" in r and "new.png" in r for r in R.stale_reasons(index))
    os.remove(root / "red" / "new.png")
    target = root / "blue" / "blue_0.png"
    colour_image("red", 98).save(target)
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert any("changed" in r and "blue_0.png" in r for r in R.stale_reasons(index))
    os.remove(target)
    assert any("removed" in r for r in R.stale_reasons(index))


def test_build_can_be_cancelled_and_reports_empty_folders(tmp_path: Path) -> None:
    import threading

    stop = threading.Event()
    stop.set()
    with pytest.raises(R.Cancelled):
        R.build_index(MeanColourPredictor(), _gallery(tmp_path), stop=stop)
    (tmp_path / "empty").mkdir()
    with pytest.raises(R.RetrievalError, match="no image files"):
        R.build_index(MeanColourPredictor(), tmp_path / "empty")
