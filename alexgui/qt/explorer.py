"""The explorer panels docked into the main window and kept on one model.

The main window knows nothing of filters, classification or retrieval; this module docks those
panels, routes the window's drops, model and export requests to them, feeds the filter grid from the
training session, and keeps every panel on the same model: whichever panel the user picks a model
in, the others follow.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QTabBar, QWidget

from alexgui.engine.inference.predict import Predictor, TorchPredictor
from alexgui.engine.store.rundir import RunDir
from alexgui.qt.app import MainWindow
from alexgui.qt.export_dialog import ExportDialog
from alexgui.qt.panels.classify import ClassifyPanel, ModelChooser
from alexgui.qt.panels.experiments import ExperimentsPanel
from alexgui.qt.panels.feature_maps import FeatureMapsPanel
from alexgui.qt.panels.filters import FiltersPanel
from alexgui.qt.panels.retrieval import RetrievalPanel
from alexgui.qt.workers import Job

RIGHT = Qt.DockWidgetArea.RightDockWidgetArea
RIGHT_DOCK_WIDTH = 380
PLOTS_MIN_WIDTH = 460


class Explorer(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.filters = FiltersPanel()
        self.classify = ClassifyPanel()
        self.retrieval = RetrievalPanel()
        self.feature_maps = FeatureMapsPanel()
        self.experiments = ExperimentsPanel(
            out_root=Path(window.settings.runs_root) / "experiments", devices=window.devices
        )
        self.docks = {
            "filters": window.add_panel("Filters", self.filters, RIGHT, "filtersDock"),
            "classify": window.add_panel("Classify", self.classify, RIGHT, "classifyDock"),
            "retrieval": window.add_panel("Retrieval", self.retrieval, RIGHT, "retrievalDock"),
            "feature_maps": window.add_panel("Feature maps", self.feature_maps, RIGHT, "featureMapsDock"),
            # Its form, curves and results need more room than a side dock has at 1280x800: scroll.
            "experiments": window.add_panel("Experiments", _scrolling(self.experiments), RIGHT, "experimentsDock"),
        }
        self.docks["filters"].raise_()  # the paper's Figure 3 is what a training user wants beside the curves
        # The curves are the centre of the window: its four plots keep room for their axes, and the
        # side panels take what is left (at 1280x800, about 380 pixels).
        window.plots.setMinimumWidth(PLOTS_MIN_WIDTH)
        window.resizeDocks([self.docks["filters"]], [RIGHT_DOCK_WIDTH], Qt.Orientation.Horizontal)
        # Dock tab bars exist only once the window lays them out (no event filter: on PySide6 6.12
        # a Python event filter on the main window can crash the interpreter).
        QTimer.singleShot(0, self.unelide_tabs)
        self._sharing = False
        self._training_run: Path | None = None
        self._fast = False
        self._torch_twin: TorchPredictor | None = None  # the PyTorch model behind the ONNX one in use
        self._convert_job: Job | None = None
        self.inference_label = QLabel("Inference: no model")
        self.inference_label.setToolTip("Which backend runs the explorer's model, and on what")
        window.statusBar().addPermanentWidget(self.inference_label)
        self._new_run = False

        for chooser in self.choosers:
            chooser.predictorChanged.connect(self._share_predictor)
            chooser.fastToggled.connect(self.set_fast_inference)
            self._add_current_run_action(chooser)
        window.session.kernels.connect(self._on_kernels)
        window.session.run_started.connect(self._on_run_started)
        window.session.finished.connect(self._on_training_finished)
        window.files_dropped.connect(self.classify_paths)
        window.model_open_requested.connect(lambda path: self.load_model(str(path)))
        window.export_requested.connect(self.show_export)
        self._maps_follow = True
        self.classify.imageClassified.connect(self._show_first_in_feature_maps)
        self.classify.finished.connect(lambda cancelled: setattr(self, "_maps_follow", True))
        self.experiments.openRunsRequested.connect(lambda paths: [window.open_run(Path(p)) for p in paths])
        # A window closed by the user is not destroyed before the interpreter exits: stop jobs on close.
        window.closed.connect(self.shutdown)
        window.destroyed.connect(self.shutdown)

    def unelide_tabs(self) -> None:
        """Whole dock titles with scroll arrows, rather than "Fil…", "Cla…" in a narrow dock."""
        for bar in self.window.findChildren(QTabBar):
            bar.setElideMode(Qt.TextElideMode.ElideNone)
            bar.setUsesScrollButtons(True)

    @property
    def choosers(self) -> list[ModelChooser]:
        return [self.classify.chooser, self.retrieval.chooser]

    # -- one model for every panel --------------------------------------------------------------

    def load_model(self, spec: str) -> None:
        """Load a checkpoint, run folder, ONNX file or "torchvision" in the background for every panel."""
        self.classify.chooser.load(spec)
        self.docks["classify"].raise_()

    def _share_predictor(self, predictor: Predictor | None) -> None:
        if self._sharing:
            return
        self._sharing = True
        try:
            for chooser in self.choosers:
                if chooser.predictor is not predictor:
                    chooser.set_predictor(predictor)
            if isinstance(predictor, TorchPredictor):
                self.feature_maps.set_predictor(predictor)  # activations need the PyTorch model
                if not self.window.session.is_running:
                    self.filters.set_model(predictor.model)
        finally:
            self._sharing = False
        self._show_backend(predictor)
        if self._fast and isinstance(predictor, TorchPredictor):
            self._convert(predictor)

    # -- fast inference -------------------------------------------------------------------------

    def set_fast_inference(self, on: bool) -> None:
        """Run the shared model on ONNX Runtime (exported once and cached) or back on PyTorch."""
        self._fast = on
        for chooser in self.choosers:
            chooser.fast.blockSignals(True)
            chooser.fast.setChecked(on)
            chooser.fast.blockSignals(False)
        current = self.classify.predictor
        if on and isinstance(current, TorchPredictor):
            self._convert(current)
        elif not on and self._torch_twin is not None and not isinstance(current, TorchPredictor):
            twin, self._torch_twin = self._torch_twin, None
            self._share_predictor(twin)

    def _convert(self, predictor: TorchPredictor) -> None:
        if self._convert_job is not None and self._convert_job.is_running():
            self._convert_job.cancel()
        self.inference_label.setText("Inference: exporting to ONNX Runtime…")
        job = Job(_to_onnx, predictor, parent=self)
        job.yielded.connect(lambda onnx: self._use_onnx(predictor, onnx))
        job.failed.connect(self._on_convert_failed)
        self._convert_job = job
        job.start()

    def _use_onnx(self, torch_predictor: TorchPredictor, onnx: Predictor) -> None:
        if not self._fast or self.classify.predictor is not torch_predictor:
            return  # switched off, or another model was picked meanwhile
        self._torch_twin = torch_predictor
        self._share_predictor(onnx)
        for warning in getattr(onnx, "warnings", []):
            self.window.log.add_message(f"ONNX Runtime: {warning}", level="warn")

    def _on_convert_failed(self, message: str) -> None:
        self.set_fast_inference(False)
        self._show_backend(self.classify.predictor)
        self.window.show_error("Fast inference is not available", f"The model could not run on ONNX Runtime:\n{message}")

    def _show_backend(self, predictor: Predictor | None) -> None:
        if predictor is None:
            self.inference_label.setText("Inference: no model")
            return
        d = predictor.describe()
        backend = "ONNX Runtime" if d.get("backend") == "onnxruntime" else "PyTorch"
        self.inference_label.setText(f"Inference: {backend} ({d.get('provider', '?')})")

    def _add_current_run_action(self, chooser: ModelChooser) -> None:
        menu = chooser.button.menu()
        action = QAction("Current training run", menu)
        action.setToolTip("The latest checkpoint of the run being trained (or just trained) in this window")
        action.triggered.connect(self._use_training_run)
        menu.insertAction(menu.actions()[0], action)

    def _use_training_run(self) -> None:
        run = self._training_run
        if run is None or not RunDir(run).last_checkpoint.exists():
            self.window.show_info(
                "No checkpoint yet",
                "The current run has no checkpoint yet. One is written at the end of each epoch, "
                "on Stop, and with Train > Save checkpoint.",
            )
            return
        self.load_model(str(run))

    # -- training -------------------------------------------------------------------------------

    def _on_run_started(self, path: str) -> None:
        self._training_run = Path(path)
        self._new_run = True

    def _on_kernels(self, kernels: dict) -> None:
        arch = self.window.monitor.form.config().model.arch
        self.filters.set_kernels(kernels, arch=arch, reset_history=self._new_run)
        self._new_run = False

    def _on_training_finished(self, final: str) -> None:
        # A first-time user trains on the demo, then drops a picture: classify with what was just trained.
        run = self._training_run
        if run is not None and self.classify.predictor is None and RunDir(run).last_checkpoint.exists():
            self.load_model(str(run))

    # -- drops, export --------------------------------------------------------------------------

    def classify_paths(self, paths: list[Path]) -> None:
        self.docks["classify"].raise_()
        self.classify.classify_paths(paths)

    def _show_first_in_feature_maps(self, result: object) -> None:
        """The feature maps follow the first image of each classified batch (the newest drop)."""
        path = getattr(result, "path", None)
        if self._maps_follow and path and getattr(result, "error", None) is None:
            self._maps_follow = False
            self.feature_maps.set_image(path)

    def show_export(self) -> None:
        predictor = self.classify.predictor
        source = predictor.source if predictor is not None else (str(self._training_run or ""))
        dialog = ExportDialog(self.window, source)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()

    def shutdown(self) -> None:
        if self._convert_job is not None:
            self._convert_job.cancel()
            self._convert_job.wait()
        for panel in (self.classify, self.retrieval, self.feature_maps, self.experiments):
            panel.shutdown()


def _scrolling(widget: QWidget) -> QScrollArea:
    area = QScrollArea()
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    return area


def _to_onnx(predictor: TorchPredictor, stop: threading.Event, progress: Callable[..., None]) -> Predictor:
    from alexgui.engine.inference.onnx_cache import exported_predictor

    return exported_predictor(predictor, progress=lambda text: progress(0, 0, text))


def install_explorer(window: MainWindow) -> Explorer:
    """Dock the explorer panels; call before window.show() so the saved layout applies to them."""
    explorer = Explorer(window)
    window.explorer = explorer
    return explorer
