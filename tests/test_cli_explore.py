"""`alexgui classify`, `alexgui index` and `alexgui neighbours`: JSON shapes and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alexgui.cli import main
from tests.explore_helpers import train_colour_checkpoint, write_colour_folder


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(train_colour_checkpoint(tmp_path_factory.mktemp("cli") / "colours.safetensors"))


def _json(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    return json.loads(capsys.readouterr().out)


def test_classify_json_all_good(model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_colour_folder(tmp_path / "imgs", per_class=2, seed=3)
    assert main(["classify", "--model", model, str(tmp_path / "imgs"), "--top", "1", "--json"]) == 0
    out = _json(capsys)
    assert len(out) == 4
    for item in out:
        assert set(item) == {"path", "top", "ms", "true_index", "backend", "provider"}
        assert (item["backend"], item["provider"]) == ("torch", "cpu")
        (top,) = item["top"]
        assert set(top) == {"label", "index", "prob"}
        assert top["label"] == Path(item["path"]).parent.name  # the model tells red from blue


def test_classify_with_onnx_runtime_gives_the_same_answers(
    model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--backend onnx exports the checkpoint on the fly, names the provider, and agrees with PyTorch."""
    write_colour_folder(tmp_path / "imgs", per_class=2, seed=4)
    assert main(["classify", "--model", model, str(tmp_path / "imgs"), "--json"]) == 0
    torch_out = _json(capsys)
    assert main(["classify", "--model", model, str(tmp_path / "imgs"), "--json", "--backend", "onnx"]) == 0
    onnx_out = _json(capsys)
    assert all(item["backend"] == "onnxruntime" and item["provider"] == "CPUExecutionProvider" for item in onnx_out)
    for a, b in zip(torch_out, onnx_out):
        assert a["path"] == b["path"]
        assert [t["label"] for t in a["top"]] == [t["label"] for t in b["top"]]
        assert [t["prob"] for t in a["top"]] == pytest.approx([t["prob"] for t in b["top"]], abs=1e-4)


def test_classify_reports_bad_files_and_exits_1(model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (good,) = write_colour_folder(tmp_path, per_class=1)[:1]
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    assert main(["classify", "--model", model, str(bad), str(good), "--json", "--ten-crop"]) == 1
    out = _json(capsys)
    assert out[0] == {"path": str(bad), "error": out[0]["error"]} and "not an image" in out[0]["error"]
    assert out[1]["top"][0]["label"] == "red" and len(out[1]["top"]) == 2


def test_a_folder_without_images_is_named(model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "holiday"
    empty.mkdir()
    (empty / "notes.txt").write_text("no pictures")
    for command in ("classify", "explain"):
        assert main([command, "--model", model, str(empty)]) == 1
        err = capsys.readouterr().err
        assert f"alexgui {command}: no image files found in {empty}" in err and ".jpg" in err, err


def test_classify_text_and_bad_model(model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (good,) = write_colour_folder(tmp_path, per_class=1)[:1]
    assert main(["classify", "--model", model, str(good)]) == 0
    text = capsys.readouterr().out
    assert str(good) in text and "red" in text and "(true: red)" in text
    assert main(["classify", "--model", str(tmp_path / "nope.safetensors"), str(good)]) == 2
    assert "nope.safetensors: no such file" in capsys.readouterr().err


def test_index_then_neighbours(model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = write_colour_folder(tmp_path / "gallery", per_class=3)
    (tmp_path / "gallery" / "broken.jpg").write_bytes(b"garbage")
    index = tmp_path / "idx"
    assert main(["index", "--model", model, "--images", str(tmp_path / "gallery"), "--out", str(index)]) == 0
    captured = capsys.readouterr()
    assert "indexed 6 images" in captured.out and "broken.jpg" in captured.err
    bad = tmp_path / "q.txt"
    bad.write_text("x")
    assert main(["neighbours", "--index", str(index), str(files[0]), str(bad), "--k", "3", "--json"]) == 1
    out = _json(capsys)
    assert set(out[0]) == {"path", "neighbours"} and len(out[0]["neighbours"]) == 3
    first = out[0]["neighbours"][0]
    assert set(first) == {"path", "distance"}
    # Itself first; not exactly 0 because the index stores float16 features.
    assert first["path"] == str(files[0].resolve())
    assert first["distance"] < 0.05 * out[0]["neighbours"][2]["distance"]
    assert Path(out[0]["neighbours"][1]["path"]).parent.name == "red"  # same colour is nearer
    assert set(out[1]) == {"path", "error"}
    assert main(["neighbours", "--index", str(index), str(files[0])]) == 0


def test_neighbours_warns_about_a_stale_index(model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = write_colour_folder(tmp_path / "gallery", per_class=1)
    assert main(["index", "--model", model, "--images", str(tmp_path / "gallery"), "--out", str(tmp_path / "i")]) == 0
    (tmp_path / "gallery" / "blue" / "blue_0.png").unlink()
    capsys.readouterr()
    assert main(["neighbours", "--index", str(tmp_path / "i"), str(files[0]), "--json"]) == 0
    assert "stale" in capsys.readouterr().err
    assert main(["neighbours", "--index", str(tmp_path / "missing"), str(files[0])]) == 2
