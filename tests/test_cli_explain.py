"""`alexgui explain` (issue 15 item 3): an overlay PNG and a .npy map per image, the JSON list, a broken
file reported while the rest carry on, the class by name or index, and the models and options refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexgui.cli import main
from tests.explore_helpers import train_colour_checkpoint, write_colour_folder


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(train_colour_checkpoint(tmp_path_factory.mktemp("ckpt") / "colours.safetensors"))


def _json(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    return json.loads(capsys.readouterr().out)


def test_a_folder_gives_a_png_and_a_map_per_image_and_a_broken_file_an_error(
    model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = write_colour_folder(tmp_path / "imgs", per_class=1)
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "maps"
    assert main(["explain", "--model", model, str(tmp_path / "imgs"), "--out", str(out), "--json"]) == 1
    entries = _json(capsys)
    assert len(entries) == 3
    [bad] = [e for e in entries if "error" in e]
    assert bad["path"].endswith("broken.jpg") and bad["error"]
    good = [e for e in entries if "error" not in e]
    assert sorted(Path(e["path"]).name for e in good) == sorted(f.name for f in files)
    for e in good:
        assert set(e) == {"path", "method", "class", "index", "prob", "map", "peak", "overlay"}
        assert e["method"] == "gradcam" and e["class"] in ("red", "blue") and 0 <= e["prob"] <= 1
        m = np.load(e["map"], allow_pickle=False)
        assert m.shape == (224, 224) and m.dtype == np.float32 and 0 <= m.min() and m.max() <= 1
        row, col = e["peak"]
        assert m[row, col] >= m.max() * 0.99
        assert Path(e["map"]).name == Path(e["path"]).stem + ".gradcam.npy"
        with Image.open(e["overlay"]) as png:
            assert png.size[0] == 2 * 224 + 8
    # The model's answer is explained: the red image's top class is red.
    red = next(e for e in good if "red" in Path(e["path"]).name)
    assert red["class"] == "red"


def test_the_class_by_name_or_index_and_each_method(model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    [red, _blue] = write_colour_folder(tmp_path / "imgs", per_class=1)
    out = tmp_path / "maps"
    assert main(["explain", "--model", model, str(red), "--class", "blue", "--out", str(out), "--json"]) == 0
    [e] = _json(capsys)
    assert e["class"] == "blue" and e["index"] == 1
    for method in ("occlusion", "guided-backprop", "saliency"):
        args = ["explain", "--model", model, str(red), "--class", "0", "--method", method, "--out", str(out), "--json"]
        if method == "occlusion":
            args += ["--patch", "112", "--stride", "56"]
        assert main(args) == 0
        [e] = _json(capsys)
        assert e["method"] == method and e["index"] == 0
        assert Path(e["overlay"]).name == f"{red.stem}.{method}.png"


def test_text_output_says_where_the_maps_went(model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    [red, _blue] = write_colour_folder(tmp_path / "imgs", per_class=1)
    assert main(["explain", "--model", model, str(red), "--out", str(tmp_path / "maps")]) == 0
    captured = capsys.readouterr()
    assert "red_0.png: red" in captured.out and "peak at row" in captured.out
    assert (tmp_path / "maps" / "red_0.gradcam.png").is_file()


def test_two_images_with_one_name_get_two_files(model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_colour_folder(tmp_path / "a", per_class=1)[0]
    b = write_colour_folder(tmp_path / "b", per_class=1, seed=3)[0]
    assert a.name == b.name
    assert main(["explain", "--model", model, str(a), str(b), "--out", str(tmp_path / "maps"), "--json"]) == 0
    entries = _json(capsys)
    assert len({e["map"] for e in entries}) == 2


def test_what_cannot_be_used_exits_2_with_a_message(model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    [red, _blue] = write_colour_folder(tmp_path / "imgs", per_class=1)
    assert main(["explain", "--model", model, str(red), "--class", "zebra", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no class named 'zebra'" in err and "red, blue" in err
    assert main(["explain", "--model", model, str(red), "--class", "5", "--out", str(tmp_path)]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["explain", "--model", str(tmp_path / "model.onnx"), str(red)]) == 2
    assert "need the PyTorch model" in capsys.readouterr().err
    assert main(["explain", "--model", str(tmp_path / "nope.safetensors"), str(red)]) == 2
    assert "nope.safetensors" in capsys.readouterr().err
    assert main(["explain", "--model", model, str(red), "--patch", "0"]) == 2
    assert "--patch: 0 is out of range" in capsys.readouterr().err
    assert main(["explain", "--model", model, str(tmp_path / "empty-dir-that-is-not-there")]) == 1
