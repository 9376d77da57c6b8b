"""The explorer's window of a unit's top images, wired to the panels a unit is clicked in.

A click on a kernel in the Filters panel or on a channel in the Feature maps panel opens the Top images
window for that unit with the explorer's PyTorch model. The images searched are, in order: the folder
the user last chose there, the retrieval index's folder, the validation images of the data being
trained on (the demo's when that is the data). Its own module so that explorer.py stays about models.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QSize
from PySide6.QtWidgets import QWidget

from alexgui.engine.inference.predict import Predictor, TorchPredictor
from alexgui.qt.experiments_window import PanelWindow
from alexgui.qt.panels.feature_maps import FeatureMapsPanel
from alexgui.qt.panels.filters import FiltersPanel
from alexgui.qt.panels.retrieval import RetrievalPanel
from alexgui.qt.panels.top_images import TopImagesPanel

TOP_IMAGES_SIZE = QSize(640, 560)  # three 112-pixel columns and the 224-pixel whole image beside them


class UnitViews(QObject):
    def __init__(self, parent: QObject, model: Callable[[], Predictor | None], filters: FiltersPanel,
                 feature_maps: FeatureMapsPanel, retrieval: RetrievalPanel, training_data: Callable[[], str],
                 show_error: Callable[[str, str], None], host: QWidget | None = None) -> None:
        super().__init__(parent)
        self._model = model
        self._retrieval = retrieval
        self._training_data = training_data
        self._show_error = show_error
        self._chosen: str | None = None
        self.panel = TopImagesPanel()
        self.window = PanelWindow(self.panel, "Top images", "topImagesWindow", TOP_IMAGES_SIZE, host)
        self.panel.gallery_changed.connect(lambda folder: setattr(self, "_chosen", folder))
        filters.units_on_click = True
        filters.unit_clicked.connect(self.show_unit)
        feature_maps.channel_clicked.connect(self.show_unit)

    def show_unit(self, layer: str, unit: int) -> None:
        predictor = self._model()
        if not isinstance(predictor, TorchPredictor):
            self._show_error("No PyTorch model", "A unit's top images need the PyTorch model's layers: load a "
                             "checkpoint, a run folder or torchvision's weights (not an ONNX file).")
            return
        if self.panel.gallery is None or (self._chosen is None and str(self.panel.gallery) != self.default_gallery()):
            self.panel.set_gallery(self.default_gallery())
        self.window.show_window()
        self.panel.show_unit(predictor, layer, unit)

    def model_changed(self) -> None:
        """The explorer's model changed: the panel's Show uses the new one; a pass of the old one is dropped."""
        predictor = self._model()
        self.panel.set_predictor(predictor if isinstance(predictor, TorchPredictor) else None)

    def default_gallery(self) -> str | None:
        if self._chosen:
            return self._chosen
        index = self._retrieval.index
        if index is not None and Path(index.root).is_dir():
            return index.root
        data = self._training_data()
        if data == "demo":
            from alexgui.engine.data.demo import demo_folder_name
            from alexgui.paths import cache_dir

            data = str(cache_dir() / demo_folder_name())
        if data and (Path(data) / "val").is_dir():
            return str(Path(data) / "val")
        return data if data and Path(data).is_dir() else None

    def shutdown(self) -> None:
        self.panel.shutdown()
        self.window.close()
