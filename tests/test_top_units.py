"""Top images per unit: the streaming top-K equals brute force, boxes follow the layer geometry, cached."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexgui.cli import main
from alexgui.config import RunConfig
from alexgui.engine.data.imageio import load_256
from alexgui.engine.data.transforms import Preprocess
from alexgui.engine.inference.predict import TorchPredictor
from alexgui.engine.model.networks import build_model
from alexgui.engine.understand import top_units
from alexgui.engine.understand.receptive_field import CONV_UNITS, geometry
from alexgui.engine.understand.top_units import TopUnitsError, top_images
from tests.helpers import kaiming_init, make_image


def predictor(arch: str = "paper") -> TorchPredictor:
    torch.manual_seed(0)
    cfg = RunConfig()
    cfg.model.arch = arch
    cfg.model.num_classes = 3
    model = kaiming_init(build_model(cfg.model).eval())  # varied activations in every layer
    return TorchPredictor(model, Preprocess.imagenet_mean_std(), ["a", "b", "c"], f"rand-{arch}", "random model")


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gallery")
    for i in range(13):
        folder = root / f"class_{i % 3}"
        folder.mkdir(exist_ok=True)
        make_image(i % 4, seed=300 + i, size=(96, 80)).save(folder / f"{i:02d}.png")
    return root


def brute_force(p: TorchPredictor, paths: list[str], layer: str) -> tuple[np.ndarray, np.ndarray]:
    """Per image and unit: the value (conv: the map's max) and the flat position of the max."""
    values, where = [], []
    with torch.inference_mode():
        for path in paths:
            x = p.preprocess.center_batch(torch.from_numpy(load_256(path))[None])
            act = p.model.activations(x, [layer])[layer][0].float()
            if act.ndim == 3:
                v, w = act.flatten(1).max(1)
            else:
                v, w = act, torch.zeros_like(act, dtype=torch.long)
            values.append(v.numpy())
            where.append(w.numpy())
    return np.stack(values, 1), np.stack(where, 1)  # (units, images)


@pytest.mark.parametrize("layer", ["conv1", "conv5", "fc7", "fc8"])
def test_the_streaming_top_k_equals_brute_force(gallery: Path, layer: str) -> None:
    p = predictor()
    tops = top_images(p, gallery, layer, k=4, batch_size=5)  # three batches: merging across them is tested
    values, where = brute_force(p, tops.paths, layer)
    assert tops.units == values.shape[0] and tops.k == 4
    order = np.argsort(-values, axis=1, kind="stable")[:, :4]
    np.testing.assert_allclose(tops.values, np.take_along_axis(values, order, 1), rtol=1e-4, atol=1e-5)
    # Images agree wherever a value is apart from its neighbours in the ranking (ReLU zeros tie, and a
    # batch's sums may differ from one image's in the last bits; any of a tie is a right answer).
    ranked = np.sort(values, axis=1)[:, ::-1]
    padded = np.concatenate([np.full((values.shape[0], 1), np.inf), ranked, np.full((values.shape[0], 1), -np.inf)], 1)
    gap = 1e-4 * (1 + np.abs(padded[:, 1:5]))
    distinct = (padded[:, 0:4] - padded[:, 1:5] > gap) & (padded[:, 1:5] - padded[:, 2:6] > gap)
    assert distinct.mean() > 0.3
    assert (tops.images[distinct] == order[distinct]).all()
    if layer.startswith("conv"):
        geo = geometry(p.model, layer)
        width = p.model.activations(torch.zeros(1, 3, 224, 224), [layer])[layer].shape[3]
        unit = int(np.argmax(distinct.all(1))) if distinct.all(1).any() else 0
        for j, image in enumerate(tops.images[unit]):
            pos = int(where[unit, image])
            assert tuple(tops.boxes[unit, j]) == geo.box(pos // width, pos % width, 224)
        assert tops.unit(unit)[0].box == tuple(int(v) for v in tops.boxes[unit, 0])
    else:
        assert tops.boxes is None and tops.unit(0)[0].box is None


@pytest.mark.parametrize("arch", ["paper", "torchvision"])
def test_the_receptive_field_is_where_the_gradient_reaches(arch: str) -> None:
    p = predictor(arch)
    expected = {"conv1": (11, 4), "conv2": (51, 8), "conv3": (99, 16), "conv4": (131, 16), "conv5": (163, 16)}
    for layer in CONV_UNITS:
        geo = geometry(p.model, layer)
        assert (geo.size, geo.jump) == expected[layer]
        x = torch.randn(1, 3, 224, 224, requires_grad=True)
        act = p.model.activations(x, [layer])[layer]
        for row, col in ((act.shape[2] // 2, act.shape[3] // 3), (0, 0)):
            x.grad = None
            p.model.activations(x, [layer])[layer][0, :, row, col].sum().backward()
            support = (x.grad[0].abs().sum(0) > 0).nonzero()
            reached = (int(support[:, 1].min()), int(support[:, 0].min()), int(support[:, 1].max()) + 1,
                       int(support[:, 0].max()) + 1)
            assert reached == geo.box(row, col, 224), (layer, row, col)


def test_fewer_images_than_k_and_bad_requests(gallery: Path, tmp_path: Path) -> None:
    p = predictor()
    few = sorted(str(f) for f in gallery.rglob("*.png"))[:2]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    tops = top_images(p, [*few, str(broken)], "fc6", k=5)
    assert len(tops.unit(7)) == 2 and tops.skipped and "broken.png" in tops.skipped[0]
    with pytest.raises(TopUnitsError, match="no unit 4096"):
        tops.unit(4096)
    with pytest.raises(TopUnitsError, match="no units to rank in 'pool5'"):
        top_images(p, gallery, "pool5")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TopUnitsError, match="no image files"):
        top_images(p, empty, "conv1")
    with pytest.raises(TopUnitsError, match="none of the 1 images"):
        top_images(p, [str(broken)], "conv1")


def test_a_pass_is_cached_and_computed_again_when_the_gallery_changes(gallery: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    folder = tmp_path / "g"
    shutil.copytree(gallery, folder)
    p = predictor()
    first = top_images(p, folder, "conv3", k=3, cache=tmp_path / "cache")
    calls: list[str] = []
    real = top_units._stream
    monkeypatch.setattr(top_units, "_stream", lambda *a, **k: calls.append("pass") or real(*a, **k))
    again = top_images(p, folder, "conv3", k=2, cache=tmp_path / "cache")  # fewer: read from the cache
    assert calls == [] and again.k == 2
    np.testing.assert_array_equal(again.values, first.values[:, :2])
    changed = sorted(folder.rglob("*.png"))[0]
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    top_images(p, folder, "conv3", k=3, cache=tmp_path / "cache")
    assert calls == ["pass"]
    top_images(p, folder, "conv3", k=5, cache=tmp_path / "cache")  # more than cached: a new pass
    assert calls == ["pass", "pass"]


def test_the_result_is_units_by_k_whatever_the_gallery(gallery: Path) -> None:
    """The pass's result (and what it keeps between batches) is (units, K), for 3 images as for 13; the
    memory it takes is measured in benchmarks/bench_top_units.py."""
    p = predictor()
    small = top_images(p, sorted(str(f) for f in gallery.rglob("*.png"))[:3], "conv2", k=3)
    large = top_images(p, gallery, "conv2", k=3)
    assert small.values.shape == large.values.shape == (256, 3)


def test_a_damaged_cache_file_is_computed_again_and_replaced(gallery: Path, tmp_path: Path) -> None:
    p = predictor()
    first = top_images(p, gallery, "fc6", k=3, cache=tmp_path / "cache")
    [cached] = (tmp_path / "cache" / "top-units").glob("*.npz")
    cached.write_bytes(cached.read_bytes()[: cached.stat().st_size // 2])  # truncated: a BadZipFile, not a ValueError
    again = top_images(p, gallery, "fc6", k=3, cache=tmp_path / "cache")
    np.testing.assert_array_equal(again.values, first.values)
    assert top_units._read_cache(tmp_path / "cache", top_units._cache_key(p, "fc6", again.paths), "fc6", 3) is not None


def test_the_cache_keeps_the_most_recently_used_passes(tmp_path: Path) -> None:
    folder = tmp_path / "top-units"
    folder.mkdir()
    for i in range(5):
        (folder / f"conv1-{i}.npz").write_bytes(b"x" * 100)
        os.utime(folder / f"conv1-{i}.npz", ns=(10**18 + i * 10**9, 10**18 + i * 10**9))
    removed = top_units.prune(folder, keep_files=3, keep_bytes=10**9)
    assert sorted(p.name for p in removed) == ["conv1-0.npz", "conv1-1.npz"]
    assert top_units.prune(folder, keep_files=10, keep_bytes=150) == [folder / "conv1-3.npz", folder / "conv1-2.npz"]


def test_the_command_line_prints_json_and_writes_a_contact_sheet(gallery: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.explore_helpers import train_colour_checkpoint

    monkeypatch.setenv("ALEXGUI_CACHE_DIR", str(tmp_path / "cache"))
    model = train_colour_checkpoint(tmp_path / "m.safetensors")
    assert main(["top-images", "--model", str(model), "--images", str(gallery), "--layer", "conv5", "--unit", "3",
                 "--k", "4", "--json", "--out", str(tmp_path / "sheets"), "--device", "cpu"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert len(entries) == 4 and set(entries[0]) == {"path", "activation", "box"}
    assert [e["activation"] for e in entries] == sorted((e["activation"] for e in entries), reverse=True)
    x0, y0, x1, y1 = entries[0]["box"]
    assert 0 <= x0 < x1 <= 224 and 0 <= y0 < y1 <= 224
    with Image.open(tmp_path / "sheets" / "conv5-unit3.png") as sheet:
        assert sheet.size[0] > 300
    assert main(["top-images", "--model", str(model), "--images", str(gallery), "--layer", "fc7", "--unit", "0",
                 "--json", "--device", "cpu"]) == 0
    assert all(e["box"] is None for e in json.loads(capsys.readouterr().out))
    assert main(["top-images", "--model", str(model), "--images", str(gallery), "--layer", "conv5", "--unit",
                 "9999", "--device", "cpu"]) == 2
    assert "no unit 9999" in capsys.readouterr().err
    assert main(["top-images", "--model", str(model), "--images", str(tmp_path / "nowhere"), "--layer", "conv5",
                 "--unit", "0"]) == 2
    assert "not a folder of images or a retrieval index" in capsys.readouterr().err
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    assert main(["top-images", "--model", str(model), "--images", str(gallery), "--layer", "fc7", "--unit", "0",
                 "--out", str(blocker), "--device", "cpu"]) == 2
    assert "cannot write fc7-unit0.png there" in capsys.readouterr().err
