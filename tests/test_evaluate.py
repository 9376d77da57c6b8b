"""Evaluation (issue 14): the report's numbers equal a direct count of `classify_files` results, ten crops
agree with the predictor's, class folders are matched by name (unknown ones listed, none matching refused),
unreadable files are skipped with the reason, and the CLI's JSON and report folder have the promised shape."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from alexgui.cli import main
from alexgui.engine.data.labels import class_of_folder
from alexgui.engine.inference.predict import TorchPredictor, classify_files
from alexgui.engine.inference.sources import load_predictor
from alexgui.engine.understand.eval_images import EvaluationError, find_evaluation_images
from alexgui.engine.understand.evaluation import evaluate
from alexgui.engine.understand.evaluation_files import REPORT_FILES, write_evaluation
from alexgui.errors import Cancelled
from tests.explore_helpers import colour_image, train_colour_checkpoint, write_colour_folder

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_colour_checkpoint(tmp_path_factory.mktemp("ckpt") / "colours.safetensors")


@pytest.fixture(scope="module")
def predictor(checkpoint: Path) -> TorchPredictor:
    loaded = load_predictor(str(checkpoint), device="cpu")
    assert isinstance(loaded, TorchPredictor)
    return loaded


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """red/ and blue/ with 4 images each, 2 blue images filed under red (the model's mistakes to find),
    a broken file, a text file, and a class folder the model does not know."""
    root = tmp_path_factory.mktemp("eval")
    write_colour_folder(root, per_class=4, seed=3)
    for i in range(2):
        colour_image("blue", 900 + i).save(root / "red" / f"really_blue_{i}.png")
    (root / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "blue" / "notes.txt").write_text("not an image")
    (root / "green").mkdir()
    colour_image("red", 77).save(root / "green" / "g.png")
    return root


def _by_hand(predictor: TorchPredictor, folder: Path, ten_crop: bool = False) -> tuple[np.ndarray, list, list]:
    """The confusion matrix counted from classify_files, image by image, over the known class folders."""
    names = predictor.class_names
    files = sorted(p for c in names for p in (folder / c).iterdir())
    matrix = np.zeros((len(names), len(names)), np.int64)
    errors, results = [], []
    for r in classify_files(predictor, [str(p) for p in files], top_k=5, ten_crop=ten_crop):
        if r.error is not None:
            errors.append(r.path)
            continue
        truth = names.index(Path(r.path).parent.name)
        matrix[truth, r.top[0].index] += 1
        results.append((r.path, [t.index for t in r.top], [t.prob for t in r.top]))
    return matrix, errors, results


def test_the_report_equals_a_direct_count_of_classify(predictor: TorchPredictor, folder: Path) -> None:
    images = find_evaluation_images(folder, predictor.class_names)
    report = evaluate(predictor, images, batch_size=3)  # batches that split the classes
    matrix, errors, results = _by_hand(predictor, folder)
    np.testing.assert_array_equal(report.confusion(), matrix)
    assert matrix[0].sum() + matrix[1].sum() == report.n == 10
    assert matrix.trace() < report.n  # the mislabelled blue images are errors
    assert report.top1_error == pytest.approx(1 - matrix.trace() / matrix.sum())
    assert report.top5_error == 0.0  # two classes: the true one is always in the top 5
    by_path = {r.path: r for r in report.results}
    for path, top, probs in results:
        assert by_path[path].top == top
        np.testing.assert_allclose(by_path[path].top_probs, probs, rtol=1e-4, atol=1e-6)
    # The per-class table, counted directly.
    for c, row in enumerate(report.per_class()):
        assert row["n"] == matrix[c].sum()
        assert row["recall"] == pytest.approx(matrix[c, c] / matrix[c].sum())
        predicted = matrix[:, c].sum()
        assert row["precision"] == (pytest.approx(matrix[c, c] / predicted) if predicted else None)
    # Unreadable files are skipped with the reason; the unknown folder is listed, not evaluated.
    assert sorted(Path(s.path).name for s in report.skipped) == ["broken.png", "notes.txt"]
    assert {Path(e).name for e in errors} == {"broken.png", "notes.txt"}
    assert all(s.reason for s in report.skipped)
    assert report.unknown_classes == ["green"]
    # The worst images: highest loss first, and the mislabelled ones among them.
    worst = report.worst(3)
    assert [w.loss for w in worst] == sorted((w.loss for w in worst), reverse=True)
    assert {Path(w.path).name for w in report.worst(2)} == {"really_blue_0.png", "really_blue_1.png"}
    cell = report.in_cell(predictor.class_names.index("red"), predictor.class_names.index("blue"))
    assert {Path(r.path).name for r in cell} == {"really_blue_0.png", "really_blue_1.png"}


def test_ten_crops_agree_with_the_predictors_ten_crops(predictor: TorchPredictor, folder: Path) -> None:
    images = find_evaluation_images(folder, predictor.class_names)
    report = evaluate(predictor, images, ten_crop=True, batch_size=4)
    matrix, _, results = _by_hand(predictor, folder, ten_crop=True)
    assert report.crop == "ten-crop"
    np.testing.assert_array_equal(report.confusion(), matrix)
    by_path = {r.path: r for r in report.results}
    for path, _top, probs in results:
        np.testing.assert_allclose(by_path[path].top_probs, probs, rtol=1e-4, atol=1e-6)


def test_class_folders_match_by_name_or_wnid_and_none_matching_is_refused(tmp_path: Path) -> None:
    assert class_of_folder("Golden_Retriever", ["tabby", "golden retriever"]) == 1
    assert class_of_folder("n02099601", ["tabby", "golden retriever"], wnids=["n02123045", "n02099601"]) == 1
    assert class_of_folder("zebra", ["tabby"]) is None
    (tmp_path / "train" / "x").mkdir(parents=True)
    (tmp_path / "val" / "zebra").mkdir(parents=True)
    colour_image("red", 1).save(tmp_path / "val" / "zebra" / "z.png")
    with pytest.raises(EvaluationError, match=r"val: no class folder names a class of the model \(folders: zebra"):
        find_evaluation_images(tmp_path, ["red", "blue"])  # with train/ and val/: val/ is evaluated
    with pytest.raises(EvaluationError, match="folder not found"):
        find_evaluation_images(tmp_path / "missing", ["red"])


def test_a_stop_cancels_between_batches(predictor: TorchPredictor, folder: Path) -> None:
    import threading

    stop = threading.Event()
    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        if done >= 2:
            stop.set()

    with pytest.raises(Cancelled):
        evaluate(predictor, find_evaluation_images(folder, predictor.class_names), batch_size=2, stop=stop,
                 progress=progress)
    assert seen[0] == (0, 12) and seen[-1][0] < 12


def test_the_command_line_json_and_report_folder(checkpoint: Path, folder: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    code = main(["evaluate", "--model", str(checkpoint), "--data", str(folder), "--json", "--worst", "3",
                 "--out", str(out), "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 1  # two files were skipped
    data = json.loads(captured.out)
    assert set(data) == {"model", "data", "crop", "n", "top1_error", "top5_error", "classes", "confusion",
                         "per_class", "worst", "skipped", "unknown_classes"}
    assert data["crop"] == "centre" and data["n"] == 10 and data["classes"] == ["red", "blue"]  # the model's order
    assert np.asarray(data["confusion"]).sum() == 10 and len(data["worst"]) == 3
    assert set(data["worst"][0]) == {"path", "true", "predicted", "prob_true", "prob_predicted", "loss"}
    assert set(data["per_class"][0]) == {"class", "n", "precision", "recall", "top1_error", "top5_error"}
    assert data["unknown_classes"] == ["green"] and len(data["skipped"]) == 2
    assert "green" in captured.err and "broken.png" in captured.err and "Traceback" not in captured.err
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)
    assert json.loads((out / "report.json").read_text()) == data
    rows = list(csv.DictReader((out / "predictions.csv").read_text(encoding="utf-8").splitlines()))
    assert len(rows) == 10 and {r["true"] for r in rows} == {"red", "blue"}
    assert sum(int(r["correct"]) for r in rows) == round((1 - data["top1_error"]) * 10)


def test_the_command_line_refuses_a_folder_with_no_class_of_the_model(checkpoint: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cats").mkdir()
    colour_image("red", 1).save(tmp_path / "cats" / "c.png")
    (tmp_path / "dogs").mkdir()
    assert main(["evaluate", "--model", str(checkpoint), "--data", str(tmp_path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no class folder names a class of the model" in err[0] and "cats" in err[0]


def test_the_report_files_alone(predictor: TorchPredictor, folder: Path, tmp_path: Path) -> None:
    copy = tmp_path / "data"
    shutil.copytree(folder, copy)
    report = evaluate(predictor, find_evaluation_images(copy, predictor.class_names))
    (copy / "red" / "really_blue_0.png").unlink()  # gone since the evaluation: worst.png still drawn
    written = write_evaluation(tmp_path / "out", report, worst=4)
    assert all(p.stat().st_size > 0 for p in written)
    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "Top-1 error" in md and "| red |" in md and "broken.png" in md


def test_a_folder_of_unreadable_files_and_an_unwritable_report_are_one_line(checkpoint: Path, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data" / "red").mkdir(parents=True)
    (tmp_path / "data" / "red" / "a.png").write_bytes(b"not an image")
    assert main(["evaluate", "--model", str(checkpoint), "--data", str(tmp_path / "data"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "none of the 1 files could be read as an image" in err and "Traceback" not in err
    good = tmp_path / "good"
    write_colour_folder(good, per_class=1)
    (tmp_path / "a-file").write_text("x")
    assert main(["evaluate", "--model", str(checkpoint), "--data", str(good), "--out", str(tmp_path / "a-file"),
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "cannot write the report" in err[-1] and "a-file" in err[-1]
    assert main(["evaluate", "--model", str(checkpoint), "--data", "", "--device", "cpu"]) == 2
    assert "an empty folder name" in capsys.readouterr().err
