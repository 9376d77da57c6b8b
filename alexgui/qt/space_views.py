"""The explorer's Feature space window: a retrieval index's images on a 2-D map of the fc7 space.

Opened with the Retrieval panel's Map… button or Train > fc7 map… (Ctrl+Shift+M); it maps
the Retrieval panel's index (asking for one to be built first when there is none) and classifies a
clicked image with the explorer's model. A new index built or opened while the window is open is
mapped in its place. The panel is qt/panels/feature_space.py; this module only places and feeds it.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QSize
from PySide6.QtWidgets import QWidget

from alexgui.engine.inference.gallery import GalleryIndex
from alexgui.engine.inference.predict import Predictor
from alexgui.qt.experiments_window import PanelWindow
from alexgui.qt.panels.feature_space import FeatureSpacePanel
from alexgui.qt.panels.retrieval import RetrievalPanel

FEATURE_SPACE_SIZE = QSize(1180, 760)  # the map and its side column; fits 1280x800 with the title bar


class FeatureSpaceViews(QObject):
    def __init__(self, parent: QObject, retrieval: RetrievalPanel, model: Callable[[], Predictor | None],
                 show_info: Callable[[str, str], None], host: QWidget | None = None) -> None:
        super().__init__(parent)
        self._retrieval = retrieval
        self._model = model
        self._show_info = show_info
        self.panel = FeatureSpacePanel()
        self.window = PanelWindow(self.panel, "Feature space", "featureSpaceWindow", FEATURE_SPACE_SIZE, host)
        retrieval.mapRequested.connect(self.show_index)
        retrieval.indexReady.connect(self._on_new_index)

    def show_map(self) -> None:
        """The Retrieval panel's index on the map, or a word on how to get one."""
        index = self._retrieval.index
        if index is None:
            self._show_info("No index to map yet", "The map places the images of a gallery index by their fc7 "
                            "features. In the Retrieval panel, choose a gallery folder and build its index, then "
                            "press Map….")
            return
        self.show_index(index)

    def show_index(self, index: GalleryIndex) -> None:
        if self.panel.index is not index:
            self.panel.set_index(index)
        self.panel.set_predictor(self._model())
        self.window.show_window()

    def set_predictor(self, predictor: Predictor | None) -> None:
        self.panel.set_predictor(predictor)

    def _on_new_index(self, index: GalleryIndex) -> None:
        if self.window.isVisible() and self.panel.index is not index:
            self.panel.set_index(index)

    def shutdown(self) -> None:
        self.panel.shutdown()
        self.window.close()
