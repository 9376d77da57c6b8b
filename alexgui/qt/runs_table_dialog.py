"""Runs > Table…: every opened run in one sortable table (the settings that differ between them, best and
last validation errors, the step of the best), and Export CSV: the curves of every run in one file and
the table in a second one beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from alexgui.engine.store.atomic import atomic_write_text
from alexgui.engine.training.run_table import RunRow, curves_csv, table, table_csv


def table_path_for(curves: Path) -> Path:
    """Where the table goes when the curves are saved as `curves`: NAME-table.csv beside it."""
    return curves.with_name(curves.stem + "-table.csv")


def export_csv(rows: list[RunRow], curves: Path) -> tuple[Path, Path]:
    """The curves of every run at `curves`, the table beside it (table_path_for); both written atomically."""
    atomic_write_text(curves, curves_csv(rows))
    atomic_write_text(table_path_for(curves), table_csv(rows))
    return curves, table_path_for(curves)


class RunsTableDialog(QDialog):
    def __init__(self, rows: list[RunRow], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Runs — alexgui")
        self.rows = rows
        columns, body = table(rows)
        self.table = QTableWidget(len(body), len(columns))
        self.table.setHorizontalHeaderLabels(columns)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for i, values in enumerate(body):
            for j, value in enumerate(values):
                self.table.setItem(i, j, _item(value))
        self.table.setSortingEnabled(True)
        self.table.resizeColumnsToContents()
        self.status = QLabel(f"{len(rows)} run(s); only the settings that differ between them are shown. "
                             "Errors in percent. Click a header to sort.")
        self.status.setWordWrap(True)
        export = QPushButton("Export CSV…")
        export.setToolTip("Every run's curves in one file (a row per step and per epoch), and this table beside it")
        export.clicked.connect(self._choose_export)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        buttons = QHBoxLayout()
        buttons.addWidget(export)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self.resize(min(1100, 120 + 110 * len(columns)), 360)

    def export(self, path: str | Path) -> None:
        try:
            curves, table_file = export_csv(self.rows, Path(path))
        except OSError as e:
            self.status.setText(f"{path}: cannot write ({e.strerror or e})")
            return
        self.status.setText(f"Saved the curves in {curves} and the table in {table_file}")

    def _choose_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the runs' curves", "runs.csv", "CSV (*.csv)")
        if path:
            self.export(path)


def _item(value: Any) -> QTableWidgetItem:
    item = QTableWidgetItem()
    if isinstance(value, bool) or value is None or isinstance(value, str) or value != value:  # NaN != NaN
        item.setText("–" if value is None or value != value else str(value))
    elif isinstance(value, float):
        item.setData(Qt.ItemDataRole.DisplayRole, value)  # numbers sort as numbers (Qt shows 6 significant digits)
    else:
        item.setData(Qt.ItemDataRole.DisplayRole, value)
    return item
