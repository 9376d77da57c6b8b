"""The runs list: every run trained here or opened from disk, with its colour and a checkbox to overlay it."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from alexgui.qt.run_registry import RunEntry

KEY_ROLE = Qt.ItemDataRole.UserRole


def swatch(color: QColor, size: int = 14) -> QIcon:
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(color)
    painter.drawRoundedRect(1, 1, size - 2, size - 2, 3, 3)
    painter.end()
    return QIcon(pixmap)


STATE_WORDS = {
    "new": "waiting",
    "preparing": "preparing data",
    "running": "running",
    "paused": "paused",
    "finished": "finished",
    "stopped": "stopped",
    "failed": "failed",
}


class RunsPanel(QWidget):
    """Check a run to draw it; select a run to make it the one the progress and ETA describe."""

    visibility_changed = Signal(str, bool)
    current_changed = Signal(str)
    remove_requested = Signal(str)
    open_requested = Signal()
    table_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setObjectName("runsList")
        self.list.setIconSize(QSize(14, 14))
        # A long run name is cut in the middle (its date and its dataset stay), whole in the tooltip.
        self.list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.itemChanged.connect(self._on_item_changed)
        self.list.currentItemChanged.connect(self._on_current_changed)
        open_button = QPushButton("Open run…")
        open_button.setToolTip("Open a run folder (from the app or `alexgui train`) to watch or compare it")
        open_button.clicked.connect(self.open_requested)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Take the selected run off the list (its folder is kept)")
        self.remove_button.clicked.connect(self._remove_current)
        table_button = QPushButton("Table…")
        table_button.setToolTip("Every run in one sortable table (settings that differ, best and last errors); "
                                "export every run's curves as CSV")
        table_button.clicked.connect(self.table_requested)
        buttons = QHBoxLayout()
        buttons.addWidget(open_button)
        buttons.addWidget(self.remove_button)
        buttons.addWidget(table_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.setSpacing(4)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        self._updating = False

    def _item(self, key: str) -> QListWidgetItem | None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(KEY_ROLE) == key:
                return item
        return None

    def add_run(self, entry: RunEntry) -> None:
        item = QListWidgetItem(swatch(entry.color), entry.name)
        item.setData(KEY_ROLE, entry.key)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        self._updating = True
        item.setCheckState(Qt.CheckState.Checked if entry.visible else Qt.CheckState.Unchecked)
        self.list.addItem(item)
        self._updating = False
        self.update_run(entry)

    def update_run(self, entry: RunEntry) -> None:
        item = self._item(entry.key)
        if item is None:
            return
        h = entry.history
        state = STATE_WORDS.get(h.state, h.state)
        steps = f", step {h.last_step.step}" if h.last_step is not None else ""
        text = f"{entry.name}  —  {state}{steps}"
        where = str(entry.path) if entry.path else "not saved"
        # Text and tooltip changes emit itemChanged too: that is not the user toggling visibility, and
        # answering it would refresh every view again from inside the refresh that called us.
        self._updating = True
        try:
            if item.text() != text:
                item.setText(text)
            item.setToolTip(f"{where}\n{entry.source}; {state}{steps}" + (f"\n{h.message}" if h.message else ""))
        finally:
            self._updating = False

    def remove_run(self, key: str) -> None:
        item = self._item(key)
        if item is not None:
            self.list.takeItem(self.list.row(item))

    def set_current(self, key: str) -> None:
        item = self._item(key)
        if item is not None:
            self.list.setCurrentItem(item)
            self.list.scrollToItem(item)

    def current_key(self) -> str | None:
        item = self.list.currentItem()
        return None if item is None else str(item.data(KEY_ROLE))

    def set_checked(self, key: str, checked: bool) -> None:
        item = self._item(key)
        if item is not None:
            item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)

    def keys(self) -> list[str]:
        return [str(self.list.item(i).data(KEY_ROLE)) for i in range(self.list.count())]

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        if not self._updating:
            self.visibility_changed.emit(str(item.data(KEY_ROLE)), item.checkState() == Qt.CheckState.Checked)

    def _on_current_changed(self, current: QListWidgetItem | None, _previous: QListWidgetItem | None) -> None:
        if current is not None:
            self.current_changed.emit(str(current.data(KEY_ROLE)))

    def _remove_current(self) -> None:
        key = self.current_key()
        if key is not None:
            self.remove_requested.emit(key)
