"""The Filters panel's history row: a slider over a run's kernel snapshots, Play, and Save animation.

The run's snapshots (engine/store/filter_history.py) are listed when a run is set and again every few
seconds while the panel is visible, so a run being trained, here or by another process, grows its
slider as it goes. With the slider at its right end the panel shows the live kernels (a model loaded or
training here), or, with none, the newest snapshot (a run opened to watch); anywhere else it shows that
snapshot (`frame_chosen`) until the user returns to the end or presses Play, which walks
the frames from where the slider is. Save animation writes a GIF of every frame in a worker, with a
bar and Cancel (engine/understand/filter_animation.py renders the frames, as `alexgui filters` does).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QPushButton, QSlider, QVBoxLayout, QWidget

from alexgui.engine.store.filter_history import FilterHistoryError, FilterSnapshot, SnapshotRef, read_snapshot, snapshots
from alexgui.engine.understand.filter_animation import save_gif
from alexgui.qt.job_mixin import JobMixin
from alexgui.qt.job_progress import JobProgress
from alexgui.qt.workers import describe_error

POLL_MS = 3000  # how often a visible panel looks for new snapshots
PLAY_MS = 250  # a frame every quarter second: a 120-frame history plays in half a minute


class FilterHistoryBar(JobMixin, QWidget):
    """See the module docstring. `set_run(path)`; `frame_chosen(snapshot)` when a past frame is shown,
    `live_chosen()` when the slider is back at the end."""

    frame_chosen = Signal(object)  # a FilterSnapshot
    live_chosen = Signal()
    saved = Signal(str)  # the GIF written

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run: Path | None = None
        self.refs: list[SnapshotRef] = []
        self.shown_step: int | None = None  # the step of the past frame on screen; None: the live kernels
        self._first: FilterSnapshot | None = None  # the history's first frame, the base of "change since start"
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setToolTip("conv1's kernels over this run's training: drag back in time; the right end is now")
        self.slider.setEnabled(False)
        self.play_button = QPushButton("Play")
        self.play_button.setToolTip("Play the kernels' history from the slider's place (from the start at the end)")
        self.play_button.setCheckable(True)
        self.play_button.setEnabled(False)
        self.save_button = QPushButton("Save animation…")
        self.save_button.setToolTip("Write the history as an animated GIF, one frame per snapshot, with the step "
                                    "and each tower's scores in each frame")
        self.save_button.setEnabled(False)
        self.label = QLabel("History: no run")
        self.label.setObjectName("hint")
        self.progress = JobProgress()
        self.progress.cancel_requested.connect(self.cancel)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.slider, 1)
        row.addWidget(self.play_button)
        row.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.label)
        layout.addWidget(self.progress)

        self.slider.valueChanged.connect(self._on_slider)
        self.play_button.toggled.connect(self._on_play)
        self.save_button.clicked.connect(self._choose_gif)
        self._poll = QTimer(self)
        self._poll.setInterval(POLL_MS)
        self._poll.timeout.connect(self._poll_if_visible)
        self._player = QTimer(self)
        self._player.setInterval(PLAY_MS)
        self._player.timeout.connect(self._next_frame)

    # ---- the run ------------------------------------------------------------------------------

    def set_run(self, run: str | Path | None) -> None:
        """The run whose history the slider walks (None: no history); starts at its latest frame."""
        self.play_button.setChecked(False)
        self.run = Path(run) if run is not None else None
        self.refs = []
        self.shown_step = None
        self._first = None
        self.refresh(force=True)  # the label and buttons say this run's, even when it has no snapshots
        if self.run is not None:
            self._poll.start()
        else:
            self._poll.stop()

    def refresh(self, force: bool = False) -> None:
        """List the run's snapshots again. Live stays at the (new) end; a past frame keeps its place: the
        slider goes to its step (or the nearest one before it, when thinning took it). Nothing is redone
        when the list is the same, unless `force`."""
        refs = snapshots(self.run) if self.run is not None else []
        if not force and [r.step for r in refs] == [r.step for r in self.refs]:
            return
        if not refs or not self.refs or refs[0].path != self.refs[0].path:
            self._first = None
        self.refs = refs
        with QSignalBlocker(self.slider):
            self.slider.setRange(0, max(len(refs) - 1, 0))
            if self.shown_step is None:
                self.slider.setValue(self.slider.maximum())
            else:
                self.slider.setValue(max(0, sum(1 for r in refs if r.step <= self.shown_step) - 1))
        enabled = len(refs) > 1
        self.slider.setEnabled(enabled)
        self.play_button.setEnabled(enabled)
        self.save_button.setEnabled(bool(refs) and not self.is_busy())
        self._describe()
        if self.shown_step is None:  # "now" moved on: a panel with nothing live shows the newest frame
            self.live_chosen.emit()

    def at_end(self) -> bool:
        return not self.refs or self.slider.value() >= self.slider.maximum()

    def latest_snapshot(self) -> FilterSnapshot | None:
        """The history's newest frame, or None when there is none or it cannot be read."""
        if not self.refs:
            return None
        try:
            return read_snapshot(self.refs[-1])
        except FilterHistoryError:
            return None

    def first_snapshot(self) -> FilterSnapshot | None:
        """The history's first frame (read once), or None when it cannot be read."""
        if self._first is None and self.refs:
            try:
                self._first = read_snapshot(self.refs[0])
            except FilterHistoryError:
                return None
        return self._first

    def _poll_if_visible(self) -> None:
        if self.isVisible() and not self.is_busy():
            self.refresh()

    # ---- moving through it --------------------------------------------------------------------

    def _on_slider(self, index: int) -> None:
        self._describe()
        if not self.refs:
            return
        if self.at_end() and not self.play_button.isChecked():
            self._go_live()
            return
        snapshot = self._read(self.refs[index])
        if snapshot is not None:
            self.shown_step = snapshot.step
            self._describe()
            self.frame_chosen.emit(snapshot)

    def _go_live(self) -> None:
        self.shown_step = None
        self._describe()
        self.live_chosen.emit()

    def _read(self, ref: SnapshotRef) -> FilterSnapshot | None:
        try:
            return read_snapshot(ref)
        except FilterHistoryError as e:  # thinned since it was listed, or damaged: say so, list again
            self.label.setText(f"History: {e}")
            self.refs = []
            QTimer.singleShot(0, self.refresh)
            return None

    def _on_play(self, playing: bool) -> None:
        self.play_button.setText("Pause" if playing else "Play")
        if playing:
            if self.at_end():
                self.slider.setValue(0)
            self._player.start()
        else:
            self._player.stop()
            if self.at_end():  # played to the end: back to the live kernels, as a drag to the end would be
                self._go_live()

    def _next_frame(self) -> None:
        if self.slider.value() >= self.slider.maximum():
            self.play_button.setChecked(False)
            return
        self.slider.setValue(self.slider.value() + 1)

    def _describe(self) -> None:
        if self.run is None:
            self.label.setText("History: no run")
            return
        if not self.refs:
            self.label.setText(f"History of {self.run.name}: no snapshots yet")
            return
        where = "now" if self.shown_step is None else f"step {self.shown_step:,}"
        last = self.refs[-1].step
        self.label.setText(f"History of {self.run.name}: {where} · {len(self.refs)} frames, steps 0 to {last:,}")

    # ---- the animation ------------------------------------------------------------------------

    def _choose_gif(self) -> None:
        if self.run is None:
            return
        start = str(self.run / "filters.gif")
        path, _ = QFileDialog.getSaveFileName(self, "Save the filters' history", start, "GIF animation (*.gif)")
        if path:
            self.save_gif(path if path.lower().endswith(".gif") else path + ".gif")

    def save_gif(self, path: str | Path) -> None:
        """Write every frame into `path` in the background (a bar, Cancel)."""
        refs = list(self.refs)
        if not refs or self.is_busy():
            return
        self.save_button.setEnabled(False)
        self.progress.begin(len(refs), label="frames")
        job = self.new_job(_write_gif, refs, str(path))
        job.progress.connect(lambda done, total, _m: self.progress.advance(done, total))
        job.yielded.connect(lambda written: self._on_saved(str(path), written))
        job.errored.connect(lambda e: self.label.setText(f"Animation not saved: {describe_error(e)}"))
        job.start()

    def _on_saved(self, path: str, frames: int) -> None:
        self.label.setText(f"Saved {frames} frames to {path}")
        self.saved.emit(path)

    def job_done(self, cancelled: bool) -> None:
        self.progress.end()
        self.save_button.setEnabled(bool(self.refs))
        if cancelled:
            self.label.setText("Animation cancelled; nothing written")


def _write_gif(refs: list[SnapshotRef], path: str, stop: object = None, progress: object = None) -> int:
    return save_gif(refs, path, progress=progress, stop=stop)  # type: ignore[arg-type]
