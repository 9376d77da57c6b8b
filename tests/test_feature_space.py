"""The map of the fc7 space (engine and `alexgui map`): deterministic, near-duplicates side by side,
cached beside the index and recomputed when the index changed, cancellable, bad input named."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexgui.cli import main
from alexgui.engine.inference import retrieval as R
from alexgui.engine.understand import feature_map_figure as colours_module
from alexgui.engine.understand import feature_space as F
from alexgui.errors import AlexguiError, Cancelled
from tests.explore_helpers import MeanColourPredictor, colour_image, write_colour_folder


def twins_index(tmp_path: Path, bases: int = 20, dim: int = 4096) -> R.GalleryIndex:
    """`bases` images in 4 class clusters, each with a near-duplicate (its features + tiny noise):
    rows 2i and 2i+1 are twins."""
    rng = np.random.default_rng(7)
    centres = np.abs(rng.normal(size=(4, dim)))
    rows, paths = [], []
    for i in range(bases):
        base = np.abs(centres[i % 4] + 0.4 * rng.normal(size=dim))
        for twin in range(2):
            rows.append(base + twin * 1e-3 * rng.normal(size=dim))
            paths.append(str(tmp_path / f"class_{i % 4}" / f"{i:03d}_{twin}.png"))
    return R.GalleryIndex(paths, np.array(rows, np.float32), "fp", {}, str(tmp_path))


def nearest_in_map(coords: np.ndarray) -> np.ndarray:
    d = np.linalg.norm(coords[:, None, :].astype(np.float64) - coords[None, :, :], axis=2)
    np.fill_diagonal(d, np.inf)
    return d.argmin(1)


@pytest.mark.parametrize("method", ["tsne", "pca"])
def test_a_seeded_map_is_identical_and_keeps_near_duplicates_together(method: str, tmp_path: Path) -> None:
    index = twins_index(tmp_path)
    first = F.compute_map(index, method, seed=3)
    again = F.compute_map(index, method, seed=3)
    assert first.coords.dtype == np.float32 and first.coords.shape == (40, 2)
    assert np.array_equal(first.coords, again.coords)  # bit for bit
    assert first.coords.min() >= -1 and first.coords.max() <= 1 and np.abs(first.coords).max() == 1
    assert not first.from_cache and first.cached_at is None  # an index saved nowhere has no cache
    twin = np.arange(40) ^ 1
    assert np.array_equal(nearest_in_map(first.coords), twin)
    assert first.classes[:4] == ["class_0", "class_0", "class_1", "class_1"]
    if method == "tsne":
        assert not np.array_equal(F.compute_map(index, method, seed=4).coords, first.coords)  # the seed matters


def test_progress_counts_up_to_its_total(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    F.compute_map(twins_index(tmp_path, bases=10), "tsne", progress=lambda d, t: seen.append((d, t)))
    total = sum(F.stage_units(20)) + F.EARLY_ITERATIONS + F.ITERATIONS
    assert seen[-1] == (total, total) and all(t == total for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) > 50


def _saved_index(tmp_path: Path) -> Path:
    write_colour_folder(tmp_path / "gallery", per_class=4)
    return R.save_index(R.build_index(MeanColourPredictor(), tmp_path / "gallery"), tmp_path / "index")


def test_the_map_is_cached_beside_the_index_and_recomputed_when_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _saved_index(tmp_path)
    fmap = F.compute_map(folder, "tsne", seed=1)
    assert fmap.cached_at == folder / "feature-map-tsne-1.npz" and fmap.cached_at.is_file()
    assert {p.name for p in folder.iterdir()} >= {"index.json", "feature-map-tsne-1.npz"}
    calls: list[str] = []
    real_embed = F.embed

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args[1])
        return real_embed(*args, **kwargs)

    monkeypatch.setattr(F, "embed", counting)
    hit = F.compute_map(folder, "tsne", seed=1)
    assert calls == [] and hit.from_cache and np.array_equal(hit.coords, fmap.coords)
    assert F.cached_map(R.load_index(folder), "tsne", 1) is not None
    assert F.cached_map(R.load_index(folder), "tsne", 2) is None  # another seed is another map
    # The index rebuilt with one more image: the cache is stale, found so, and replaced.
    colour_image("red", 99).save(tmp_path / "gallery" / "red" / "new.png")
    R.save_index(R.build_index(MeanColourPredictor(), tmp_path / "gallery"), folder)
    assert F.cached_map(R.load_index(folder), "tsne", 1) is None
    fresh = F.compute_map(folder, "tsne", seed=1)
    assert calls == ["tsne"] and not fresh.from_cache and len(fresh) == 9
    assert F.compute_map(folder, "tsne", seed=1).from_cache and calls == ["tsne"]
    # Same paths, other features (another model): stale too.
    R.save_index(R.build_index(MeanColourPredictor(dim=6), tmp_path / "gallery"), folder)
    assert not F.compute_map(folder, "tsne", seed=1).from_cache and len(calls) == 2
    # A damaged cache, or one holding a pickle, is never trusted (nor unpickled): computed again.
    cache = folder / "feature-map-tsne-1.npz"
    for damage in (b"not a zip file", None):
        if damage is None:
            np.savez(cache, coords=np.array([object()], dtype=object), key=np.array("x"))
        else:
            cache.write_bytes(damage)
        assert not F.compute_map(folder, "tsne", seed=1).from_cache
    assert len(calls) == 4
    # PCA has a cache of its own, whatever the seed.
    assert F.compute_map(folder, "pca", seed=5).cached_at == folder / "feature-map-pca.npz"
    assert F.compute_map(folder, "pca", seed=6).from_cache


@pytest.mark.parametrize("after", [1, sum(F.stage_units(40)) + 20])
def test_the_map_can_be_cancelled(after: int, tmp_path: Path) -> None:
    folder = R.save_index(twins_index(tmp_path / "g"), tmp_path / "index")
    stop = threading.Event()

    def progress(done: int, total: int) -> None:
        if done >= after:
            stop.set()

    with pytest.raises(Cancelled, match="cancelled"):
        F.compute_map(folder, "tsne", progress=progress, stop=stop)
    assert not list(folder.glob("feature-map*")) and not list(folder.glob(".feature-map*"))


def test_bad_input_is_named(tmp_path: Path) -> None:
    with pytest.raises(AlexguiError, match="missing: not an index"):
        F.compute_map(tmp_path / "missing")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "index.json").write_text("{ not json")
    with pytest.raises(AlexguiError, match=r"broken/index.json: not valid JSON"):
        F.compute_map(tmp_path / "broken")
    two = R.save_index(twins_index(tmp_path / "g", bases=1), tmp_path / "two")
    with pytest.raises(F.FeatureSpaceError, match=rf"{two}: t-SNE needs at least 3 images; the index has 2"):
        F.compute_map(two)
    assert len(F.compute_map(two, "pca")) == 2  # a line, but a map
    same = R.GalleryIndex([f"/g/a/{i}.png" for i in range(5)], np.ones((5, 8), np.float32), "fp", {}, "/g")
    with pytest.raises(F.FeatureSpaceError, match="/g: all 5 images have the same features"):
        F.compute_map(same, "pca")
    nan = R.GalleryIndex(same.paths, np.full((5, 8), np.nan, np.float32), "fp", {}, "/g")
    with pytest.raises(F.FeatureSpaceError, match="infinite or NaN"):
        F.compute_map(nan, "tsne")
    with pytest.raises(F.FeatureSpaceError, match="unknown map method 'umap'"):
        F.compute_map(same, "umap")


def test_class_palette_keeps_twenty_colours_and_groups_the_rest() -> None:
    classes = [f"c{i:02d}" for i in range(25) for _ in range(i + 1)]
    legend, colours = colours_module.class_palette(classes)
    assert len(legend) == 20 and legend[-1] == colours_module.OTHER_NAME
    assert {colours[c] for c in ("c00", "c01", "c05")} == {colours_module.OTHER}  # the smallest classes
    assert len({colours[c] for c in legend[:-1]}) == 19 and colours_module.OTHER not in {colours[c] for c in legend[:-1]}


def test_cli_map_writes_a_png_and_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _saved_index(tmp_path)
    png = tmp_path / "out" / "map.png"
    assert main(["map", "--index", str(folder), "--out", str(png), "--method", "pca", "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    index = R.load_index(folder)
    assert [o["path"] for o in out] == index.paths and all(set(o) == {"path", "x", "y"} for o in out)
    assert all(-1 <= o["x"] <= 1 and -1 <= o["y"] <= 1 for o in out)
    assert "mapping (PCA)" in captured.err
    with Image.open(io.BytesIO(png.read_bytes())) as picture:
        assert picture.format == "PNG" and picture.width > 400
    # t-SNE by default; the second time from the cache, said on stderr.
    assert main(["map", "--index", str(folder), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 8
    assert main(["map", "--index", str(folder), "--json"]) == 0
    assert "is current; not computed again" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--index", "{tmp}/nope", "--json"], "alexgui map: {tmp}/nope: not an index (no index.json)"),
        (["--index", "{tmp}/nope"], "alexgui map: nothing to write: give --out PNG, --json, or both"),
        (["--index", "{tmp}/nope", "--json", "--seed", "-1"], "alexgui map: argument --seed: -1 is out of range"),
        (["--index", "{tmp}/nope", "--json", "--method", "umap"], "argument --method: invalid choice: 'umap'"),
    ],
)
def test_cli_map_errors_are_one_line(argv: list[str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["map", *(a.format(tmp=tmp_path) for a in argv)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert words.format(tmp=tmp_path) in err
