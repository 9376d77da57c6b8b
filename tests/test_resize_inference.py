"""A model trained at another --resize is classified, evaluated, explained and exported at its own size.

Inference used to decode every file at 256: the paper mean image of a run trained at --resize 73 did not
fit it (classify failed) and a mean/std model saw a centre crop of a different part of the image than it
was trained on. Each path now decodes at the model's own resize, and a 256 image given to such a model
(a pasted image, the parity check's generated images) is resampled to it first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from alexgui.cli import main
from alexgui.engine.data.imageio import load_256
from alexgui.engine.inference.sources import load_predictor
from alexgui.engine.store.rundir import RunDir
from alexgui.engine.understand.explain import explain
from tests.helpers import make_dataset, tiny_config

RESIZE, CROP = 73, 64


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from alexgui.engine.events import Failed
    from alexgui.engine.training.loop import train

    root = tmp_path_factory.mktemp("resize")
    cfg = tiny_config(make_dataset(root / "data", classes=2, train_per_class=4, val_per_class=2), epochs=1)
    cfg.data.resize, cfg.data.crop = RESIZE, CROP
    events = list(train(cfg, RunDir.create(root / "run", cfg)))
    assert not any(isinstance(e, Failed) for e in events), events[-1]
    return root / "run"


def _image(run: Path) -> str:
    return str(sorted((run.parent / "data" / "val").rglob("*.png"))[0])


def test_the_predictor_decodes_at_the_runs_resize(run: Path) -> None:
    predictor = load_predictor(run)
    assert predictor.decode_size == RESIZE
    u8 = predictor.load_image(_image(run))
    assert u8.shape == (RESIZE, RESIZE, 3)
    exact, _ = predictor.predict_u8(u8[None])
    # A 256 decode is resampled to the model's size: the same prediction up to resampling differences.
    resampled, _ = predictor.predict_u8(load_256(_image(run))[None])
    assert np.argmax(exact) == np.argmax(resampled)
    assert np.abs(exact - resampled).max() < 0.1


def test_classify_evaluate_and_explain_work_on_it(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = _image(run)
    assert main(["classify", "--model", str(run), image, "--json"]) == 0
    top = json.loads(capsys.readouterr().out)[0]
    assert "error" not in top or not top["error"], top
    assert main(["evaluate", "--model", str(run), "--data", str(Path(image).parents[2]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 4 and not report["skipped"], report
    predictor = load_predictor(run)
    for u8 in (predictor.load_image(image), load_256(image)):
        expl = explain(predictor, u8, "gradcam")
        assert expl.map.shape == (CROP, CROP) and expl.crop.shape == (CROP, CROP, 3)


def test_the_onnx_export_agrees_with_classify(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    onnx = tmp_path / "m.onnx"
    assert main(["export", "--model", str(run), "--out", str(onnx)]) == 0  # runs the parity check
    image = _image(run)
    capsys.readouterr()
    assert main(["classify", "--model", str(run), image, "--json"]) == 0
    torch_top = json.loads(capsys.readouterr().out)[0]["top"]
    assert main(["classify", "--model", str(onnx), image, "--json"]) == 0
    onnx_top = json.loads(capsys.readouterr().out)[0]["top"]
    assert [t["label"] for t in torch_top] == [t["label"] for t in onnx_top]
    assert [t["prob"] for t in torch_top] == pytest.approx([t["prob"] for t in onnx_top], abs=1e-4)
