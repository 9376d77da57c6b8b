"""What the main window is made of: its commands (actions with shortcuts, icons and tips), the menus,
toolbar and status bar that show them, the docks with their remembered layout, and the Help menu.

`MainWindowUi` is the window's look, as Qt Designer's Ui classes are; MainWindow (main_window.py)
derives from it and connects each command to what it does. Nothing here trains, opens or watches.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from PySide6.QtCore import QByteArray, QSize, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence, QShowEvent
from PySide6.QtWidgets import QAbstractButton, QComboBox, QDockWidget, QMainWindow, QMessageBox, QToolBar, QWidget

from alexgui import __version__
from alexgui.qt.app import icon
from alexgui.qt.elided_label import ElidedLabel
from alexgui.qt.settings import AppSettings
from alexgui.qt.window_fit import DEFAULT_SIZE, fit_window, place_default, shrinkable

PAPER = "Krizhevsky, Sutskever & Hinton, “ImageNet Classification with Deep Convolutional Neural Networks”, NIPS 2012"


def reserve_width(button: QWidget | None, texts: tuple[str, ...]) -> None:
    """Give a button whose text changes the width of its widest text."""
    if not isinstance(button, QAbstractButton):
        return
    current = button.text()
    widths = []
    for text in texts:
        button.setText(text)
        widths.append(button.sizeHint().width())
    button.setText(current)
    button.setMinimumWidth(max(widths))


class MainWindowUi(QMainWindow):
    """See the module docstring. The subclass sets `settings` and docks the Training, Log and Runs
    panels (train_dock, log_dock, runs_dock) before `_make_menus`, which lists them in the View menu."""

    layout_reset = Signal()  # View > Reset layout has rebuilt the docks (their tab bars are new)
    settings: AppSettings
    _default_state: QByteArray  # the layout as built, before a saved one is restored: what Reset layout restores
    train_dock: QDockWidget
    log_dock: QDockWidget
    runs_dock: QDockWidget

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("alexgui")
        self.setWindowIcon(icon("alexgui"))
        self.setObjectName("alexguiMainWindow")
        self.setDockOptions(
            QMainWindow.DockOption.AnimatedDocks
            | QMainWindow.DockOption.AllowTabbedDocks
            | QMainWindow.DockOption.AllowNestedDocks
        )
        self.setAcceptDrops(True)
        self.resize(DEFAULT_SIZE)
        self._restored = False
        self._first_tabs: list[QDockWidget] = []

    # -- commands ---------------------------------------------------------------------------

    def _action(self, text: str, name: str, shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None,
                icon_name: str | None = None, tip: str = "") -> QAction:
        action = QAction(text, self)
        action.setObjectName(name)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if icon_name:
            action.setIcon(icon(icon_name))
        shown = f"{tip} ({action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)})" if shortcut and tip else tip
        if shown:
            action.setToolTip(shown)
            action.setStatusTip(tip)
        self.addAction(action)  # shortcuts work even when menus and toolbar are hidden
        return action

    def _make_actions(self) -> None:
        """Every command; the window's own (layout, help, quit) are connected here, the rest by MainWindow."""
        a = self._action
        self.act_open_dataset = a("Open &dataset folder…", "openDataset", QKeySequence.StandardKey.Open,
                                  "dataset", "Train on an image folder: one subfolder per class")
        self.act_open_run = a("Open &run…", "openRun", "Ctrl+R", "run",
                              "Watch or compare a run folder (from the app or `alexgui train`)")
        self.act_open_model = a("Open checkpoint or ONNX &model…", "openModel", "Ctrl+M", "model",
                                "Load a trained model to explore and classify with")
        self.act_export = a("&Export…", "export", "Ctrl+E", "export", "Export the model (ONNX, weights)")
        self.act_quit = a("&Quit", "quit", "Ctrl+Q")
        self.act_start = a("Start", "start", "F5", "start", "Start training with these settings")
        self.act_pause = a("Pause", "pause", "F6", "pause", "Pause or resume training")
        self.act_stop = a("Stop", "stop", "Shift+F5", "stop", "Stop training; a checkpoint is written first")
        self.act_save = a("Save", "save", QKeySequence.StandardKey.Save, "save", "Write a checkpoint now, without stopping")
        self.act_resume_run = a("Continue selected run", "resumeRun", "Ctrl+F5", None,
                                "Continue the selected stopped run from its last checkpoint")
        self.act_runs_folder = a("Runs folder…", "runsFolder", None, None, "Where new runs are written")
        self.act_show_runs_folder = a("Show runs folder", "showRunsFolder", None, None,
                                      "Open the runs folder in the file manager")
        self.act_reset_layout = a("Reset layout", "resetLayout")
        self.act_about = a("&About alexgui", "about")
        self.act_shortcuts = a("Keyboard shortcuts", "shortcuts", "F1")
        for action, slot in ((self.act_quit, self.close), (self.act_reset_layout, self.reset_layout),
                             (self.act_about, self.show_about), (self.act_shortcuts, self.show_shortcuts)):
            action.triggered.connect(slot)

    def _make_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        file.addActions([self.act_open_dataset, self.act_open_run, self.act_open_model])
        self.recent_menu = file.addMenu("Open &recent")  # filled by MainWindow each time it opens
        file.addSeparator()
        file.addAction(self.act_export)
        file.addSeparator()
        file.addAction(self.act_quit)
        train = self.train_menu = bar.addMenu("&Train")
        train.addActions([self.act_start, self.act_pause, self.act_stop, self.act_save])
        train.addSeparator()
        train.addAction(self.act_resume_run)
        train.addSeparator()
        train.addActions([self.act_runs_folder, self.act_show_runs_folder])
        self.view_menu = bar.addMenu("&View")
        self.view_menu.addAction(self.act_reset_layout)
        self.view_menu.addSeparator()
        for dock in (self.train_dock, self.log_dock, self.runs_dock):
            self.view_menu.addAction(dock.toggleViewAction())
        help_menu = bar.addMenu("&Help")
        help_menu.addActions([self.act_shortcuts, self.act_about])

    def _make_toolbar(self) -> None:
        tools = QToolBar("Main toolbar")
        tools.setObjectName("mainToolbar")
        tools.setMovable(False)
        tools.setIconSize(QSize(18, 18))
        tools.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for action in (self.act_open_dataset, self.act_open_run, self.act_open_model):
            tools.addAction(action)
        tools.addSeparator()
        tools.addActions([self.act_start, self.act_pause, self.act_stop, self.act_save])
        tools.addSeparator()
        tools.addAction(self.act_export)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, tools)
        self.toolbar = tools
        # Toolbar texts are short; menus keep the long ones.
        for action, short in ((self.act_open_dataset, "Dataset"), (self.act_open_run, "Run"), (self.act_open_model, "Model"),
                              (self.act_export, "Export")):
            button = tools.widgetForAction(action)
            if button is not None:
                button.setText(short)

    def _make_status_bar(self) -> None:
        # Elided: a long device name or state would otherwise widen the status bar, and the window.
        self.state_label = ElidedLabel("Idle")
        self.state_label.setObjectName("stateLabel")
        self.device_label = ElidedLabel("")
        self.device_label.setObjectName("deviceLabel")
        self.statusBar().addPermanentWidget(self.state_label)
        self.statusBar().addPermanentWidget(self.device_label)

    def add_window_action(self, text: str, name: str, shortcut: str, tip: str, slot: Callable[[], None]) -> QAction:
        """A command that opens a window of its own (Train > Experiments…): in the Train menu and the toolbar."""
        action = self._action(text, name, shortcut, None, tip)
        action.triggered.connect(slot)
        self.train_menu.addSeparator()
        self.train_menu.addAction(action)
        self.toolbar.addAction(action)
        button = self.toolbar.widgetForAction(action)
        if button is not None:
            button.setText(text.replace("&", "").rstrip("…"))
        return action

    # -- docks and layout -------------------------------------------------------------------

    def add_panel(self, title: str, widget: QWidget, area: Qt.DockWidgetArea = Qt.DockWidgetArea.RightDockWidgetArea,
                  object_name: str | None = None) -> QDockWidget:
        """Dock `widget` (tabbed with panels already in that area); the layout is remembered by object_name."""
        dock = QDockWidget(title, self)
        dock.setObjectName(object_name or f"{title.lower().replace(' ', '')}Dock")
        dock.setWidget(widget)
        # A panel's combo boxes would otherwise be as wide as their longest item (a path, a model's
        # name), and the dock, and the window, with them: one rule for every docked panel.
        for box in widget.findChildren(QComboBox):
            shrinkable(box)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        existing = [d for d in self.findChildren(QDockWidget) if d is not dock and self.dockWidgetArea(d) == area
                    and not d.isFloating()]
        self.addDockWidget(area, dock)
        if existing and area not in (Qt.DockWidgetArea.BottomDockWidgetArea, Qt.DockWidgetArea.LeftDockWidgetArea):
            self.tabifyDockWidget(existing[-1], dock)
        if hasattr(self, "view_menu"):  # the first docks come before the menus; _make_menus lists them
            self.view_menu.addAction(dock.toggleViewAction())
        return dock

    def restore_layout(self) -> None:
        """Geometry and dock layout from the last session, kept on the screen; call after every panel
        has been added (the window calls it when first shown). The layout as built is kept first:
        it is the first-launch layout that Reset layout brings back."""
        self._default_state = self.saveState()
        geometry, state = self.settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        fit_window(self)  # saved on a larger or another screen: never bigger than this one, nor off it
        self._restored = True

    def showEvent(self, event: QShowEvent) -> None:
        if not self._restored:
            self.restore_layout()
        super().showEvent(event)

    def reset_layout(self) -> None:
        """The first-launch layout: every dock where it was built, tabbed as then, shown, and the
        window at its first-launch size where the screen has room (what closing then saves)."""
        if not self._restored:  # not shown yet: the layout is still the one built
            return
        for dock in self.findChildren(QDockWidget):
            dock.setFloating(False)
        self.restoreState(self._default_state)
        for dock in self.findChildren(QDockWidget):
            if dock.isHidden() and not dock.isFloating():
                dock.show()
        for dock in self.first_tabs:
            dock.raise_()
        if not (self.isMaximized() or self.isFullScreen()):
            place_default(self)
        self.layout_reset.emit()

    @property
    def first_tabs(self) -> list[QDockWidget]:
        """The docks in front of their tab groups at first launch (the explorer adds the Filters dock)."""
        return list(self._first_tabs)

    def set_first_tab(self, dock: QDockWidget) -> None:
        """Bring `dock` to the front of its tab group now and again on Reset layout."""
        self._first_tabs.append(dock)
        dock.raise_()

    # -- help -------------------------------------------------------------------------------

    def show_about(self) -> None:
        QMessageBox.about(
            self,
            "About alexgui",
            f"<h3>alexgui {__version__}</h3>"
            f"<p>See, train and use AlexNet, the network of<br><i>{PAPER}</i>.</p>"
            "<p>Two-tower network, local response normalisation, overlapping pooling, dropout, "
            "the paper's data augmentation and 10-crop testing, with switches for the ablations.</p>"
            f"<p>Python {sys.version.split()[0]}</p>",
        )

    def show_shortcuts(self) -> None:
        rows = "".join(
            f"<tr><td style='padding-right:16px'>{a.text().replace('&', '')}</td>"
            f"<td><b>{a.shortcut().toString(QKeySequence.SequenceFormat.NativeText)}</b></td></tr>"
            for a in self.actions() if not a.shortcut().isEmpty()
        )
        QMessageBox.information(self, "Keyboard shortcuts", f"<table>{rows}</table>")
