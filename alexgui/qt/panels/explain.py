"""Explain a prediction: where the network looked, for one image and one of its top-5 classes.

Opened from a Classify card's "Explain" button or an Evaluation image; a window of its own (the
Classify dock is too narrow for two images side by side). The method and the class are chosen above
the pictures; the original and the map over it are side by side below, with the colour scale, the
opacity of the map and "Save PNG…" (the figure `alexgui explain` writes). A click on either picture
opens the figure larger. Every method runs on the panel's worker with the predictor's lock held
(engine.understand.explain); occlusion, the long one, shows a bar with the time left and can be
cancelled. Changing a setting while a map is computed cancels it and starts the new one.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from alexgui.engine.inference.predict import Predictor
from alexgui.engine.store.atomic import atomic_write_bytes
from alexgui.engine.understand.explain import (
    DEFAULT_PATCH,
    DEFAULT_STRIDE,
    METHOD_TITLES,
    METHODS,
    Cancelled,
    Explanation,
    explain,
)
from alexgui.engine.understand.explain_files import DEFAULT_OPACITY, caption, figure, overlay
from alexgui.engine.understand.figures import png_of_image
from alexgui.qt.job_mixin import JobMixin
from alexgui.qt.job_progress import JobProgress
from alexgui.qt.model_names import short_class_label
from alexgui.qt.panels.classify_cards import ERROR_RED, MUTED
from alexgui.qt.panels.explain_view import ColourScale, LargerView, ScaledImage
from alexgui.qt.workers import describe_error

TOP_K = 5
UNITS = {  # what the colours measure, each relative to the map's largest value
    "gradcam": "conv5's evidence for the class (both towers)",
    "occlusion": "the class's probability lost when the place is hidden",
    "guided-backprop": "the class score's guided gradient at each pixel",
    "saliency": "the class score's gradient at each pixel",
}


def _explain_job(predictor: Predictor, u8: np.ndarray, method: str, class_index: int | None, patch: int,
                 stride: int, stop: threading.Event, progress: Callable[[int, int, str], None]) -> Iterator[tuple]:
    """Worker side: the image's probabilities (for the class list), then the map; nothing if cancelled."""
    probs, _ = predictor.predict_u8(u8[None])
    try:
        e = explain(predictor, u8, method, class_index, patch=patch, stride=stride, stop=stop,
                    progress=lambda done, total: progress(done, total, "occluding"))
    except Cancelled:
        return
    yield probs[0], e


class ExplainPanel(JobMixin, QWidget):
    """See the module docstring. `show_image` gives it an image and a model; the rest is the user's."""

    explained = Signal(object)  # the Explanation shown (GUI thread)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.predictor: Predictor | None = None
        self.name = ""
        self.u8: np.ndarray | None = None
        self.true_index: int | None = None
        self.explanation: Explanation | None = None
        self._ranked = False  # the class list holds this image's top 5
        self._again = False  # a setting changed while a map was computed: compute the new one after
        self._image_id = 0  # which show_image a job's result belongs to: one for an image left is dropped

        self.title = QLabel("Nothing to explain yet: press Explain on a Classify card, or on an Evaluation image.")
        self.title.setWordWrap(True)
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.method = QComboBox()
        for m in METHODS:
            self.method.addItem(METHOD_TITLES[m], m)
        self.method.setToolTip("Grad-CAM: conv5's class-weighted maps. Occlusion: the drop in the class's "
                               "probability when a grey patch hides each place. Guided backpropagation and "
                               "saliency: the class score's gradient at each pixel.")
        self.method.currentIndexChanged.connect(self._settings_changed)
        self.class_box = QComboBox()
        self.class_box.setToolTip("Explain the model's answer for this class (its top 5 for this image)")
        self.class_box.setMinimumContentsLength(14)
        self.class_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.class_box.currentIndexChanged.connect(self._class_changed)
        self.patch = self._spin(8, 224, DEFAULT_PATCH, "Occlusion: the grey patch's side in pixels")
        self.stride = self._spin(4, 224, DEFAULT_STRIDE, "Occlusion: pixels between patches (smaller: finer, slower)")
        self.patch.valueChanged.connect(self._occlusion_changed)
        self.stride.valueChanged.connect(self._occlusion_changed)
        self.patch_label, self.stride_label = QLabel("patch"), QLabel("stride")
        controls = QHBoxLayout()
        controls.addWidget(self.method)
        controls.addWidget(self.class_box, 1)
        for w in (self.patch_label, self.patch, self.stride_label, self.stride):
            controls.addWidget(w)

        self.progress = JobProgress()
        self.progress.cancel_requested.connect(self.cancel)
        self.original = ScaledImage("The 224x224 centre crop the model sees (click for a larger view)")
        self.map_view = ScaledImage("The map over the crop (click for a larger view)")
        self.original.clicked.connect(self.open_larger)
        self.map_view.clicked.connect(self.open_larger)
        pictures = QHBoxLayout()
        pictures.addWidget(self.original, 1)
        pictures.addWidget(self.map_view, 1)

        self.caption = QLabel("")
        self.caption.setWordWrap(True)
        self.scale = ColourScale()
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(int(100 * DEFAULT_OPACITY))
        self.opacity.setToolTip("The map's opacity over the image")
        self.opacity.valueChanged.connect(self._redraw)
        self.save_button = QPushButton("Save PNG…")
        self.save_button.setToolTip("The original and the map side by side, with the caption and the colour scale")
        self.save_button.clicked.connect(self._choose_save_path)
        self.save_button.setEnabled(False)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        bottom = QHBoxLayout()
        bottom.addWidget(self.scale, 2)
        bottom.addWidget(QLabel("opacity"))
        bottom.addWidget(self.opacity, 1)
        bottom.addWidget(self.save_button)

        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addLayout(controls)
        layout.addWidget(self.progress)
        layout.addLayout(pictures, 1)
        layout.addWidget(self.caption)
        layout.addLayout(bottom)
        layout.addWidget(self.message)
        self._show_occlusion_settings()

    @staticmethod
    def _spin(low: int, high: int, value: int, tip: str) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(low, high)
        spin.setValue(value)
        spin.setToolTip(tip)
        spin.setKeyboardTracking(False)  # typing "48" is one change, not "4" then "48"
        return spin

    # ---- public -----------------------------------------------------------------------------------

    @property
    def method_name(self) -> str:
        return str(self.method.currentData())

    def show_image(self, name: str, u8: np.ndarray, predictor: Predictor, true_index: int | None = None) -> None:
        """Explain this decoded (256, 256, 3) image's top class with the current method."""
        u8 = np.array(u8, dtype=np.uint8)  # its own writable copy: torch refuses read-only arrays
        self.name, self.u8, self.predictor, self.true_index = name, u8, predictor, true_index
        self.explanation = None
        self._ranked = False
        self._image_id += 1
        self.class_box.blockSignals(True)
        self.class_box.clear()
        self.class_box.blockSignals(False)
        self.original.set_array(_model_crop(u8, predictor))
        self.map_view.set_array(None)
        self.caption.setText("")
        self.title.setText(f"<b>{html.escape(name)}</b> <span style='color:{MUTED}'>· "
                           f"{html.escape(predictor.source)}</span>")
        self.run()

    def set_predictor(self, predictor: Predictor | None) -> None:
        """Another model: the image shown is explained again by it (its classes may differ)."""
        if predictor is self.predictor:
            return
        self.predictor = predictor
        if self.u8 is not None and predictor is not None:
            self.show_image(self.name, self.u8, predictor, None)

    def run(self) -> None:
        """Compute the map for the current image, method and class (cancelling one under way)."""
        if self.u8 is None or self.predictor is None:
            return
        if self.is_busy():
            self._again = True
            self.cancel()
            return
        self._again = False
        self.message.setText("")
        index = self.class_box.currentData() if self._ranked else None
        method = self.method_name
        if method == "occlusion":
            self.progress.begin(0, label="occluding")
        job = self.new_job(_explain_job, self.predictor, self.u8, method, index, self.patch.value(), self.stride.value())
        image_id = self._image_id
        job.yielded.connect(lambda result: self._on_result(*result) if image_id == self._image_id else None)
        job.progress.connect(lambda done, total, _msg: self.progress.advance(done, total))
        job.errored.connect(self._on_error)
        job.start()

    def save_png(self, path: str | Path) -> bool:
        """The figure as shown (original | overlay, caption, scale) at the crop's size; says where or why not."""
        if self.explanation is None:
            return False
        try:
            atomic_write_bytes(Path(path), png_of_image(figure(self.explanation, self.opacity.value() / 100)))
        except OSError as e:
            self._say(f"Not saved: {path}: {e.strerror or e}", error=True)
            return False
        self._say(f"Saved {path}")
        return True

    def open_larger(self) -> LargerView | None:
        if self.explanation is None:
            return None
        title = f"{self.name} — {caption(self.explanation)}"
        view = LargerView(figure(self.explanation, self.opacity.value() / 100), title, self)
        view.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        view.show()
        return view

    # ---- results ------------------------------------------------------------------------------------

    def _on_result(self, probs: np.ndarray, e: Explanation) -> None:
        if not self._ranked:
            self._fill_classes(probs, e.class_index)
        self.explanation = e
        drop = f"; largest drop {100 * e.raw_max:.1f} points" if e.method == "occlusion" else ""
        self.scale.set_unit(UNITS[e.method] + drop)
        self.caption.setText(caption(e))
        self.save_button.setEnabled(True)
        self._redraw()
        self.explained.emit(e)

    def _fill_classes(self, probs: np.ndarray, chosen: int) -> None:
        assert self.predictor is not None
        names = self.predictor.class_names
        order = [int(i) for i in np.argsort(-probs)[:TOP_K]]
        if self.true_index is not None and self.true_index not in order and self.true_index < len(names):
            order.append(self.true_index)
        self.class_box.blockSignals(True)
        self.class_box.clear()
        for i in order:
            mark = " (true class)" if i == self.true_index else ""
            self.class_box.addItem(f"{short_class_label(names[i])} {100 * float(probs[i]):.1f}%{mark}", i)
        self.class_box.setCurrentIndex(max(0, self.class_box.findData(chosen)))
        self.class_box.blockSignals(False)
        self._ranked = True

    def _redraw(self) -> None:
        if self.explanation is not None:
            self.map_view.set_array(overlay(self.explanation, self.opacity.value() / 100))

    def _on_error(self, error: BaseException) -> None:
        self._say(describe_error(error), error=True)

    def job_done(self, cancelled: bool) -> None:
        self.progress.end()
        if self._again:
            self.run()
        elif cancelled:
            self._say("Cancelled.")

    def _say(self, text: str, error: bool = False) -> None:
        colour = ERROR_RED if error else MUTED
        self.message.setText(f"<span style='color:{colour}'>{html.escape(text)}</span>")

    # ---- settings ---------------------------------------------------------------------------------------

    def _settings_changed(self) -> None:
        self._show_occlusion_settings()
        self.run()

    def _class_changed(self) -> None:
        if self._ranked:
            self.run()

    def _occlusion_changed(self) -> None:
        if self.method_name == "occlusion":
            self.run()

    def _show_occlusion_settings(self) -> None:
        occluding = self.method_name == "occlusion"
        for w in (self.patch_label, self.patch, self.stride_label, self.stride):
            w.setVisible(occluding)

    def _choose_save_path(self) -> None:
        if self.explanation is None:
            return
        stem = Path(self.name).stem or "image"
        path, _ = QFileDialog.getSaveFileName(self, "Save explanation as PNG", f"{stem}.{self.explanation.method}.png",
                                              "PNG images (*.png)")
        if path:
            self.save_png(path)


def _model_crop(u8: np.ndarray, predictor: Predictor) -> np.ndarray:
    """The central part of the image the model will see (224 of 256 for the paper), at the image's scale."""
    pre = getattr(predictor, "preprocess", None)
    if pre is None or u8.ndim != 3:
        return u8
    side = min(u8.shape[:2])
    c = max(1, round(side * pre.crop / pre.resize))
    top, left = (u8.shape[0] - c) // 2, (u8.shape[1] - c) // 2
    return np.ascontiguousarray(u8[top : top + c, left : left + c])
