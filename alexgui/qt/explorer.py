"""The explorer panels docked into the main window and kept on one model.

The main window knows nothing of filters, classification or retrieval; this module docks those
panels, routes the window's drops, model and export requests to them, feeds the filter grid from the
training session, and keeps every panel on the same model: the panels and their model choosers view
one ExplorerModel (explorer_model.py), so whichever panel the user picks a model in, the others
follow. With fast inference on, a PyTorch model is exported to ONNX Runtime in the background (the
explorer's one job, from JobMixin) and the model becomes the ONNX one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QSize, Qt, QTimer
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDockWidget, QTabBar

from alexgui.engine.data.imageio import ImageError
from alexgui.engine.inference.predict import Classified, Predictor, TorchPredictor
from alexgui.engine.store.rundir import RunDir
from alexgui.qt.elided_label import ElidedLabel
from alexgui.qt.experiments_window import ExperimentsWindow, PanelWindow
from alexgui.qt.explorer_model import ExplorerModel
from alexgui.qt.export_dialog import ExportDialog, exportable_source
from alexgui.qt.job_mixin import JobMixin
from alexgui.qt.main_window import MainWindow
from alexgui.qt.model_names import run_folder_of
from alexgui.qt.panels.classify import ClassifyPanel, ModelChooser
from alexgui.qt.panels.evaluation import EvaluationPanel
from alexgui.qt.panels.experiments import ExperimentsPanel
from alexgui.qt.panels.explain import ExplainPanel
from alexgui.qt.panels.feature_maps import FeatureMapsPanel
from alexgui.qt.panels.filters import FiltersPanel
from alexgui.qt.panels.retrieval import RetrievalPanel
from alexgui.qt.space_views import FeatureSpaceViews
from alexgui.qt.unit_views import UnitViews
from alexgui.qt.workers import describe_error

RIGHT = Qt.DockWidgetArea.RightDockWidgetArea
RIGHT_DOCK_WIDTH = 380
PLOTS_MIN_WIDTH = 460
EVALUATION_SIZE = QSize(1180, 760)
EXPLAIN_SIZE = QSize(860, 620)  # two 320-pixel pictures side by side, and the controls


class Explorer(JobMixin, QObject):
    """See the module docstring. Its one job (JobMixin) is the ONNX export for fast inference."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.model = ExplorerModel(self)
        self.filters = FiltersPanel()
        self.classify = ClassifyPanel(model=self.model)
        self.retrieval = RetrievalPanel(model=self.model)
        self.feature_maps = FeatureMapsPanel()
        self.experiments = ExperimentsPanel(
            out_root=Path(window.settings.runs_root) / "experiments", devices=window.devices
        )
        self.docks = {
            "filters": window.add_panel("Filters", self.filters, RIGHT, "filtersDock"),
            "classify": window.add_panel("Classify", self.classify, RIGHT, "classifyDock"),
            "retrieval": window.add_panel("Retrieval", self.retrieval, RIGHT, "retrievalDock"),
            "feature_maps": window.add_panel("Feature maps", self.feature_maps, RIGHT, "featureMapsDock"),
        }
        # The Experiments panel needs a form, a plot and a report side by side: a window of its own
        # (experiments_window.py), not a fifth tab in a dock that has 380 pixels at 1280x800.
        self.experiments_window = ExperimentsWindow(self.experiments, window)
        self.act_experiments = window.add_window_action(
            "&Experiments…", "experiments", "Ctrl+Shift+X",
            "Re-measure the paper's claims (ReLU vs tanh, LRN, pooling, dropout, two towers) on your data",
            self.experiments_window.show_window)  # fmt: skip
        # The confusion matrix, its images and the per-class table side by side: a window too.
        self.evaluation = EvaluationPanel(model=self.model)
        self.evaluation_window = PanelWindow(self.evaluation, "Evaluation", "evaluationWindow", EVALUATION_SIZE, window)
        self.act_evaluate = window.add_window_action(
            "E&valuate…", "evaluate", "Ctrl+Shift+V",
            "How good is the model, and where does it fail: confusion matrix, per-class errors, worst images",
            self.evaluation_window.show_window)  # fmt: skip
        self.evaluation.openInClassify.connect(lambda path: self.classify_paths([Path(path)]))
        # Two pictures side by side do not fit the 380-pixel dock either: Explain is a window too.
        self.explain = ExplainPanel()
        self.explain_window = PanelWindow(self.explain, "Explain", "explainWindow", EXPLAIN_SIZE, window)
        self.classify.explainRequested.connect(self.explain_result)
        # A kernel (Filters) or channel (Feature maps) clicked: the images that drive it, in a window.
        self.units = UnitViews(self, self.torch_model, self.filters, self.feature_maps, self.retrieval,
                               lambda: window.monitor.form.config().data.data, window.show_error, window)
        self.model.changed.connect(lambda _p: self.units.model_changed())
        # A retrieval index's images on a 2-D map of the fc7 space, in a window (Retrieval's Map…).
        self.space = FeatureSpaceViews(self, self.retrieval, lambda: self.model.predictor, window.show_info, window)
        self.model.changed.connect(self.space.set_predictor)
        self.act_map = window.add_window_action(
            "fc7 &map…", "map", "Ctrl+Shift+M",
            "The Retrieval panel's index on a 2-D map (t-SNE or PCA): similar images together, classes in clusters",
            self.space.show_map)  # fmt: skip
        # "Download ImageNet weights…" in the training form: the Classify panel's chooser downloads them
        # (bytes, Cancel) and loads them; then the form checks its source again.
        start_from = window.monitor.form.start_from
        start_from.download_requested.connect(self._download_for_training)
        self.model.changed.connect(lambda _p: start_from.problem and start_from.set_source(start_from.init))
        self.evaluation.explainImage.connect(self.explain_path)
        window.set_first_tab(self.docks["filters"])  # the paper's Figure 3 is what a training user wants beside the curves
        # The curves are the centre of the window: its four plots keep room for their axes, and the
        # side panels take what is left (at 1280x800, about 380 pixels).
        window.plots.setMinimumWidth(PLOTS_MIN_WIDTH)
        window.resizeDocks([self.docks["filters"]], [RIGHT_DOCK_WIDTH], Qt.Orientation.Horizontal)
        # Dock tab bars exist only once the window lays them out, and new ones come when docks are
        # moved or the layout is reset (no event filter: on PySide6 6.12 a Python event filter on the
        # main window can crash the interpreter).
        QTimer.singleShot(0, self.unelide_tabs)
        for dock in window.findChildren(QDockWidget):
            dock.dockLocationChanged.connect(lambda _area: QTimer.singleShot(0, self.unelide_tabs))
        window.layout_reset.connect(self.unelide_tabs)
        self._training_run: Path | None = None
        self._torch_twin: TorchPredictor | None = None  # the PyTorch model behind the ONNX one in use
        self._convert_next: TorchPredictor | None = None  # to export once the job for an older model has ended
        self.inference_label = ElidedLabel("Inference: no model")  # never widens the status bar
        self.inference_label.setToolTip("Which backend runs the explorer's model, and on what")
        window.statusBar().addPermanentWidget(self.inference_label)
        self._new_run = False

        self.model.changed.connect(self._on_model_changed)
        self.model.fast_changed.connect(self._on_fast_changed)
        for chooser in self.choosers:
            self._add_current_run_action(chooser)
            chooser.logMessage.connect(window.log.add_message)  # "Model loaded …", downloads, failures
        window.session.kernels.connect(self._on_kernels)
        window.session.run_started.connect(self._on_run_started)
        # A run chosen in the runs list (one another process trains, too): its filter history in Filters.
        window.current_run_changed.connect(
            lambda path: path is not None and not window.session.is_running and self.filters.set_history_run(path))
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
        window.closed.connect(self.experiments_window.close)  # a window of its own: it would outlive the main one
        window.closed.connect(self.evaluation_window.close)
        window.closed.connect(self.explain_window.close)
        window.closed.connect(self.units.window.close)
        window.closed.connect(self.space.window.close)
        window.destroyed.connect(self.shutdown)

    def unelide_tabs(self) -> None:
        """Whole dock titles with scroll arrows, rather than "Fil…", "Cla…" in a narrow dock."""
        for bar in self.window.findChildren(QTabBar):
            bar.setElideMode(Qt.TextElideMode.ElideNone)
            bar.setUsesScrollButtons(True)

    @property
    def choosers(self) -> list[ModelChooser]:
        return [self.classify.chooser, self.retrieval.chooser, self.evaluation.chooser]

    # -- one model for every panel --------------------------------------------------------------

    def load_model(self, spec: str, show: bool = True) -> None:
        """Load a checkpoint, run folder, ONNX file or "torchvision" in the background for every panel;
        `show` brings the Classify panel to the front (not when the app loads a model by itself)."""
        self.classify.chooser.load(spec)
        if show:
            self.docks["classify"].raise_()

    def _on_model_changed(self, predictor: Predictor | None) -> None:
        # The choosers follow the model themselves; the feature maps and filters need the PyTorch model.
        if isinstance(predictor, TorchPredictor):
            self.feature_maps.set_predictor(predictor)
            if not self.window.session.is_running:  # while training, the filters show the live kernels
                self.filters.set_model(predictor.model)
                self.filters.set_history_run(run_folder_of(Path(predictor.source)))
        self._show_backend(predictor)
        if self.explain.u8 is not None and self.torch_model() is not None:
            self.explain.set_predictor(self.torch_model())  # the image shown, explained by the new model
        if self.model.fast and isinstance(predictor, TorchPredictor):
            self._convert(predictor)

    def _download_for_training(self) -> None:
        self.docks["classify"].raise_()
        self.classify.chooser.load("torchvision", allow_download=True)

    # -- fast inference -------------------------------------------------------------------------

    def set_fast_inference(self, on: bool) -> None:
        """Run the shared model on ONNX Runtime (exported once and cached) or back on PyTorch."""
        self.model.set_fast(on)

    def _on_fast_changed(self, on: bool) -> None:
        current = self.model.predictor
        if on and isinstance(current, TorchPredictor):
            self._convert(current)
        elif not on and self._torch_twin is not None and not isinstance(current, TorchPredictor):
            twin, self._torch_twin = self._torch_twin, None
            self.model.set_predictor(twin)
        elif not on:
            self._show_backend(current)  # not "exporting…" any more: an export under way is ignored when it ends

    def _convert(self, predictor: TorchPredictor) -> None:
        self.inference_label.setText("Inference: exporting to ONNX Runtime…")
        if self.is_busy():
            # An export cannot be cut short; this one starts when it has ended (job_done), if still wanted.
            self._convert_next = predictor
            self.cancel()
            return
        job = self.new_job(_to_onnx, predictor)
        job.yielded.connect(lambda onnx: self._use_onnx(predictor, onnx))
        job.errored.connect(self._on_convert_failed)
        job.start()

    def job_done(self, cancelled: bool) -> None:
        predictor, self._convert_next = self._convert_next, None
        if predictor is not None and self.model.fast and self.model.predictor is predictor:
            self._convert(predictor)

    def _use_onnx(self, torch_predictor: TorchPredictor, onnx: Predictor) -> None:
        if not self.model.fast or self.model.predictor is not torch_predictor:
            return  # switched off, or another model was picked meanwhile
        self._torch_twin = torch_predictor
        self.model.set_predictor(onnx)
        for warning in getattr(onnx, "warnings", []):
            self.window.log.add_message(f"ONNX Runtime: {warning}", level="warn")

    def _on_convert_failed(self, error: BaseException) -> None:
        self.set_fast_inference(False)
        self._show_backend(self.model.predictor)
        self.window.show_error("Fast inference is not available",
                               f"The model could not run on ONNX Runtime:\n{describe_error(error)}")

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
        self.filters.set_history_run(path)

    def _on_kernels(self, kernels: dict) -> None:
        arch = self.window.monitor.form.config().model.arch
        self.filters.set_kernels(kernels, arch=arch, reset_history=self._new_run)
        self._new_run = False

    def _on_training_finished(self, final: str) -> None:
        # A first-time user trains on the demo, then drops a picture: classify with what was just trained.
        run = self._training_run
        if run is not None and self.model.predictor is None and RunDir(run).last_checkpoint.exists():
            self.load_model(str(run), show=False)  # the tab the user looks at stays in front
        if run is not None and RunDir(run).last_checkpoint.exists():
            self.evaluation.offer_run(run)  # the panel's default: this run's validation images
            self.window.log.offer(f"Training of {run.name} ended.", "Evaluate this run",
                                  lambda: self.evaluate_run(run))

    def evaluate_run(self, run: Path) -> None:
        """The run's model on its validation images, in the Evaluation window (the log's one-click offer)."""
        self.evaluation.set_images(run, is_run=True)
        self.evaluation_window.show_window()
        chooser = self.evaluation.chooser
        chooser.load(str(run))

        def run_when_loaded() -> None:  # not with another model, when this one would not load
            predictor = chooser.predictor
            if predictor is not None and Path(predictor.source).resolve().is_relative_to(run.resolve()):
                self.evaluation.run()

        chooser.after_job(run_when_loaded)

    # -- explain --------------------------------------------------------------------------------

    def torch_model(self) -> Predictor | None:
        """The model explanations use: the PyTorch one, also behind fast inference's ONNX twin; an ONNX
        file opened as such is returned as it is, and the Explain panel says why it cannot be used."""
        predictor = self.model.predictor
        if not isinstance(predictor, TorchPredictor) and self._torch_twin is not None:
            return self._torch_twin
        return predictor

    def explain_result(self, result: Classified) -> None:
        """A Classify card's image in the Explain window, its top class explained with the current method."""
        predictor = self.torch_model()
        if result.image is None or predictor is None:
            return
        self.explain.show_image(Path(result.path).name, result.image, predictor, result.true_index)
        self.explain_window.show_window()

    def explain_path(self, path: str, true_index: int = -1) -> None:
        """An image file (an Evaluation image) in the Explain window; the true class is offered when known."""
        predictor = self.torch_model()
        if predictor is None:
            return
        try:
            u8 = predictor.load_image(path)
        except ImageError as e:
            self.window.show_error("Cannot explain this image", f"{e.path}: {e.reason}")
            return
        self.explain.show_image(Path(path).name, u8, predictor, true_index if true_index >= 0 else None)
        self.explain_window.show_window()

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
        # The PyTorch model behind the current one (with fast inference on, that is a cached ONNX file).
        source = exportable_source(self.model.predictor) or str(self._training_run or "")
        dialog = ExportDialog(self.window, source)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()

    def shutdown(self) -> None:  # no arguments: also connected to window.destroyed, which passes the window
        """Stop every background job and wait for its thread (the window is closing)."""
        self._convert_next = None
        JobMixin.shutdown(self)
        # The model choosers load in jobs of their own: after Stop, the run's model starts loading
        # (_on_training_finished) just as a window closing after training quits the app.
        for panel in (self.classify, self.retrieval, self.feature_maps, self.experiments, self.evaluation,
                      self.explain, *self.choosers):
            panel.shutdown()
        self.units.shutdown()
        self.space.shutdown()
        self.filters.history.shutdown()  # a GIF being written


def _to_onnx(predictor: TorchPredictor, stop: threading.Event, progress: Callable[..., None]) -> Predictor:
    from alexgui.engine.inference.onnx_cache import exported_predictor

    return exported_predictor(predictor, progress=lambda text: progress(0, 0, text))


def install_explorer(window: MainWindow) -> Explorer:
    """Dock the explorer panels; call before window.show() so the saved layout applies to them."""
    explorer = Explorer(window)
    window.explorer = explorer
    return explorer
