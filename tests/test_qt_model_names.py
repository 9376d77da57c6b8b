"""Which model is loaded, wherever it is shown (issue #19): run folders told apart, ONNX models named by
the model they were made from, Export pre-filling the PyTorch model with a readable verdict, ImageNet
wnids with their names, and `alexgui gui --model RUN_DIR`."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from alexgui.commands import gui
from alexgui.config import RunConfig
from alexgui.engine.inference.predict import Classified, TopClass
from alexgui.errors import AlexguiError
from alexgui.qt.export_dialog import FAILED_COLOR, PASSED_COLOR, ExportDialog, exportable_source
from alexgui.qt.model_names import model_title, source_title
from alexgui.qt.panels.classify_cards import ResultCard
from alexgui.qt.panels.model_chooser import ModelChooser
from alexgui.qt.panels.retrieval import RetrievalPanel
from alexgui.qt.plots import BACKGROUND
from alexgui.qt.settings import AppSettings
from tests.explore_helpers import MeanColourPredictor

DOCK_WIDTH = 380  # the side dock at 1280x800


def make_run(root: Path, name: str, checkpoints: tuple[str, ...] = ("best.safetensors", "last.safetensors")) -> Path:
    """A run folder as RunDir.create makes one; the checkpoint files only need to exist here."""
    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.toml").write_text(RunConfig().to_toml(), encoding="utf-8")
    for checkpoint in checkpoints:
        (run / "checkpoints" / checkpoint).write_bytes(b"")
    return run


def fake(source: str, exported_from: str = "") -> MeanColourPredictor:
    predictor = MeanColourPredictor()
    predictor.source = source
    if exported_from:
        predictor.exported_from = exported_from  # type: ignore[attr-defined]
    return predictor


def test_two_runs_best_checkpoints_are_told_apart_in_every_chooser(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b = make_run(tmp_path, "run-a"), make_run(tmp_path, "run-b")
    best_a, best_b = a / "checkpoints" / "best.safetensors", b / "checkpoints" / "best.safetensors"
    assert source_title(str(best_a)) == "run-a / best.safetensors"
    assert source_title(str(best_b)) == "run-b / best.safetensors"
    assert source_title(str(a)) == "run-a"
    assert source_title("torchvision") == "torchvision ImageNet AlexNet"
    assert source_title(str(tmp_path / "loose" / "model.safetensors")) == "loose / model.safetensors"

    chooser = ModelChooser()
    qtbot.addWidget(chooser)
    retrieval = RetrievalPanel(model=chooser.model)  # the explorer's panels share one model
    qtbot.addWidget(retrieval)
    chooser.set_predictor(fake(str(best_b)))
    for label in (chooser.label, retrieval.chooser.label):
        assert label.text() == "run-b / best.safetensors · fake · 2 classes"
        assert str(best_b) in label.toolTip()  # the full path on hover
    # However long the path, the name asks for no width: the dock (and the window) keep theirs.
    deep = tmp_path / ("a-very-long-folder-name-" * 8) / "run-c"
    chooser.set_predictor(fake(str(make_run(deep.parent, "run-c") / "checkpoints" / "best.safetensors")))
    assert chooser.label.minimumSizeHint().width() < 120 and chooser.minimumSizeHint().width() < DOCK_WIDTH


def test_an_onnx_model_is_named_and_exported_by_the_model_it_was_made_from(tmp_path: Path) -> None:
    best = make_run(tmp_path, "run-a") / "checkpoints" / "best.safetensors"
    cached = str(tmp_path / "cache" / "onnx" / "paper-0123456789abcdef.onnx")
    onnx = fake(cached, exported_from=str(best))
    assert model_title(onnx) == "run-a / best.safetensors on ONNX Runtime · fake · 2 classes"
    assert exportable_source(onnx) == str(best)  # not the cached ONNX file ("not a PyTorch model")
    assert exportable_source(fake(str(tmp_path / "given.onnx"))) == ""  # an ONNX file of unknown origin
    assert exportable_source(fake(str(best))) == str(best)
    assert exportable_source(None) == ""


@pytest.fixture
def window(qtbot, qt_settings: AppSettings):  # type: ignore[no-untyped-def]
    from alexgui.qt.explorer import install_explorer
    from alexgui.qt.main_window import MainWindow

    w = MainWindow(qt_settings, devices=[("cpu", "CPU")])
    install_explorer(w)
    qtbot.addWidget(w)
    yield w
    w.explorer.shutdown()


def test_export_prefills_the_pytorch_model_behind_fast_inference(qtbot, window, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    best = make_run(tmp_path, "run-a") / "checkpoints" / "best.safetensors"
    window.explorer.model.set_predictor(fake(str(tmp_path / "paper-0123.onnx"), exported_from=str(best)))
    window.explorer.show_export()
    (dialog,) = window.findChildren(ExportDialog)
    assert dialog.model_edit.text() == str(best)
    assert dialog.model_name.text() == "run-a / best.safetensors" and not dialog.model_name.isHidden()
    dialog.close()


def test_the_parity_verdict_is_readable(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from alexgui.engine.inference.parity import ExportResult, ParityReport, SourceParity, parity_path

    def export_with(passed: bool):  # type: ignore[no-untyped-def]
        def fake_export(model, out, fp16, opset, images_dir, *, stop, progress):  # type: ignore[no-untyped-def]
            report = ParityReport(onnx=out, precision="float32", provider="CPUExecutionProvider", tolerance=0.05,
                                  passed=passed, generated=SourceParity(images=8, max_abs_logit_diff=0.5, logit_scale=3.0),
                                  real=None, real_dir=None, skipped=[], seconds=1.0)
            return ExportResult(Path(out), report, parity_path(out), 2.5, 1_000_000)
        return fake_export

    for passed, word, color in ((True, "PASSED", PASSED_COLOR), (False, "FAILED", FAILED_COLOR)):
        dialog = ExportDialog(model="torchvision", export_fn=export_with(passed))
        qtbot.addWidget(dialog)
        dialog.out_edit.setText(str(tmp_path / "m.onnx"))
        with qtbot.waitSignal(dialog.exported, timeout=30_000):
            dialog.export_button.click()
        qtbot.waitUntil(lambda d=dialog: not d.is_running(), timeout=30_000)
        assert f"Parity {word}" in dialog.verdict.text() and color in dialog.verdict.text()
        assert not dialog.verdict.isHidden()
        assert f"parity {word}" in dialog.report_view.toPlainText()
        # Text and background from the theme (plots.py), not the light palette's white.
        assert BACKGROUND in dialog.report_view.styleSheet()
        assert dialog.model_name.text() == "torchvision ImageNet AlexNet"


def test_imagenet_wnids_are_shown_with_their_names_and_the_true_class_is_not_cut(qtbot) -> None:  # type: ignore[no-untyped-def]
    names = ["n02086240", "n02096294", "n01440764"]  # a model trained on an ImageNet-style folder
    result = Classified("val/n02086240/n02086240_1234.JPEG",
                        top=[TopClass("n02096294", 1, 0.7), TopClass("n01440764", 2, 0.2)],
                        true_index=0, true_prob=0.1)
    card = ResultCard(result, names, "centre crop")
    qtbot.addWidget(card)
    card.resize(DOCK_WIDTH, 200)
    card.show()
    labels = [label for label, _, _ in card.bars.rows]
    assert labels == ["Australian terrier", "tench", "Shih-Tzu"]  # the wnids are in the tooltip and the true-class line
    assert card.truth is not None and "Shih-Tzu (n02086240)" in card.truth.text() and "10.0%" in card.truth.text()
    assert card.truth.wordWrap()  # its own line, wrapped: never "n02086240 (tr…"
    # The bars elide; the tooltip has them whole.
    assert "Shih-Tzu (n02086240)  (true class)" in card.bars.toolTip()
    assert "Australian terrier (n02096294)" in card.bars.toolTip()
    assert card.minimumSizeHint().width() <= DOCK_WIDTH
    # The label column grows with the names, within its bounds, so these fit at the dock's width.
    assert card.bars.label_width() >= card.bars.fontMetrics().horizontalAdvance("Australian terrier")


# ---- alexgui gui --model RUN_DIR ------------------------------------------------------------------


def test_gui_model_accepts_a_run_folder(tmp_path: Path) -> None:
    both = make_run(tmp_path, "both")
    assert gui.model_file(both) == both / "checkpoints" / "best.safetensors"
    last_only = make_run(tmp_path, "last-only", ("last.safetensors",))
    assert gui.model_file(last_only) == last_only / "checkpoints" / "last.safetensors"
    file = tmp_path / "model.onnx"
    assert gui.model_file(file) == file  # a file as it is (the window names one that is missing)
    empty = make_run(tmp_path, "empty", ())
    with pytest.raises(AlexguiError) as raised:
        gui.model_file(empty)
    assert str(raised.value).startswith(f"{empty}: ") and "best.safetensors" in str(raised.value)


def test_gui_command_opens_the_run_folders_checkpoint(qtbot, qt_settings: AppSettings, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path, "run-a")
    monkeypatch.setattr("alexgui.qt.main_window.AppSettings", lambda: qt_settings)
    monkeypatch.setattr("alexgui.qt.explorer.Explorer.load_model", lambda self, spec: None)  # the file is empty
    _, w = gui.build(argparse.Namespace(run=[], data=None, model=str(run)))
    qtbot.addWidget(w)
    with qtbot.waitSignal(w.model_open_requested, timeout=10_000) as opened:
        pass  # opened once the event loop runs
    assert Path(opened.args[0]) == run / "checkpoints" / "best.safetensors"
    w.explorer.shutdown()


def test_classify_and_retrieval_fit_the_side_dock_whatever_they_show(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Nothing in either panel may ask for more than the side dock's width at 1280x800: a long model
    path, a long failure with a URL and a digest, the query row."""
    from alexgui.qt.panels.classify import ClassifyPanel

    classify = ClassifyPanel()
    qtbot.addWidget(classify)
    retrieval = RetrievalPanel(model=classify.chooser.model)
    qtbot.addWidget(retrieval)
    long_run = make_run(tmp_path, "run-" + "x" * 120)
    classify.set_predictor(fake(str(long_run / "checkpoints" / "best.safetensors")))
    classify.chooser._show_problem(f"{tmp_path}/{'y' * 200}.pth: SHA-256 is {'0' * 64}, expected {'f' * 64}; "
                                   "see https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", offer_pick=True)
    for panel in (classify, retrieval):
        assert panel.minimumSizeHint().width() <= DOCK_WIDTH, type(panel).__name__
