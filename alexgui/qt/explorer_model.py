"""The model every explorer panel works with, held once: the panels and their model choosers are views.

Whichever chooser the user loads a model in, and whatever else sets it (File > Open model, the fast
inference switch, the end of a training run), it is set here and every view follows `changed`. A
setter that is given what the model already holds does nothing and emits nothing, so views that set
the model in answer to `changed` cannot loop.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from alexgui.engine.inference.predict import Predictor


class ExplorerModel(QObject):
    """The current predictor (PyTorch or ONNX Runtime) and whether fast inference is wanted."""

    changed = Signal(object)  # the new Predictor, or None
    fast_changed = Signal(bool)  # the "Fast inference (ONNX Runtime)" switch

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._predictor: Predictor | None = None
        self._fast = False

    @property
    def predictor(self) -> Predictor | None:
        return self._predictor

    @property
    def source(self) -> str:
        """Where the current model came from (a checkpoint, run folder, ONNX file, "torchvision"), or ""."""
        return self._predictor.source if self._predictor is not None else ""

    @property
    def fast(self) -> bool:
        return self._fast

    def set_predictor(self, predictor: Predictor | None) -> None:
        if predictor is self._predictor:
            return
        self._predictor = predictor
        self.changed.emit(predictor)

    def set_fast(self, on: bool) -> None:
        if on == self._fast:
            return
        self._fast = on
        self.fast_changed.emit(on)
