"""An experiment's report read in the app: report.md rendered (Qt's Markdown) with its PNG plots,
scaled to the view's width, so reading it never depends on a desktop launcher; and the result's
summary beside the paper's claim, under the curves.

Links in the report are run folders (relative to the report) or web pages: a run folder is offered to
the window (`runRequested`, which opens it in the runs list), a web page goes to the browser.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QImageReader, QResizeEvent, QTextCursor, QTextImageFormat
from PySide6.QtWidgets import QFrame, QGridLayout, QGroupBox, QLabel, QScrollArea, QTextBrowser, QVBoxLayout, QWidget

from alexgui.engine.experiments.report import REPORT_MD

IMAGE_MARGIN = 32  # room for the scroll bar and the document's margins beside a scaled plot
EMPTY = "No report yet: run the experiment; its report shows here when the last run has ended."


class ReportView(QTextBrowser):
    """See the module docstring."""

    runRequested = Signal(str)  # a run folder the report links to

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("experimentReport")
        self.setOpenLinks(False)  # links are handled here: a folder is not a page to show
        self.anchorClicked.connect(self._on_link)
        self.folder: Path | None = None
        self._natural: dict[str, tuple[float, float]] = {}  # image name -> its size in pixels
        self.clear_report()

    def clear_report(self) -> None:
        self.folder = None
        self._natural.clear()
        self.setPlainText(EMPTY)

    def show_report(self, folder: Path) -> bool:
        """Render FOLDER/report.md; False (and a line saying why) when it cannot be read."""
        path = folder / REPORT_MD
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            self.clear_report()
            self.setPlainText(f"{path}: cannot read the report ({e})")
            return False
        self.folder = folder
        self._natural.clear()
        self.document().clear()
        self.setSearchPaths([str(folder)])  # the plots are named relative to the report
        self.document().setBaseUrl(QUrl.fromLocalFile(str(folder) + "/"))
        self.setMarkdown(text)
        self._fit_images()
        return True

    def image_names(self) -> list[str]:
        """The images the rendered report shows (what a test can check)."""
        return [fmt.name() for fmt, _, _ in self._images()]

    def _images(self) -> list[tuple[QTextImageFormat, int, int]]:
        found = []
        block = self.document().begin()
        while block.isValid():
            it = block.begin()
            while not it.atEnd():
                fragment = it.fragment()
                fmt = fragment.charFormat()
                if fmt.isImageFormat():
                    found.append((fmt.toImageFormat(), fragment.position(), fragment.length()))
                it += 1
            block = block.next()
        return found

    def _fit_images(self) -> None:
        """Each plot at its own size, or narrower to fit the view (no sideways scrolling)."""
        room = max(self.viewport().width() - IMAGE_MARGIN, 100)
        for fmt, position, length in self._images():
            name = fmt.name()
            if name not in self._natural:
                size = QImageReader(str(self.folder / name)).size() if self.folder is not None else None
                if size is None or size.isEmpty():
                    continue  # not a file beside the report: Qt shows its placeholder
                self._natural[name] = (float(size.width()), float(size.height()))
            width, height = self._natural[name]
            scale = min(1.0, room / width)
            if abs(fmt.width() - width * scale) < 1:
                continue
            fmt.setWidth(width * scale)
            fmt.setHeight(height * scale)
            cursor = QTextCursor(self.document())
            cursor.setPosition(position)
            cursor.setPosition(position + length, QTextCursor.MoveMode.KeepAnchor)
            cursor.setCharFormat(fmt)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self.folder is not None:
            self._fit_images()

    def _on_link(self, url: QUrl) -> None:
        if url.scheme() in ("http", "https"):
            QDesktopServices.openUrl(url)
            return
        if self.folder is None:
            return
        target = (self.folder / url.path()).resolve() if url.isRelative() else Path(url.toLocalFile())
        if target.is_dir():
            self.runRequested.emit(str(target))


SUMMARY_MIN_HEIGHT = 150  # about five lines of each box at 10 pt


class SummaryView(QScrollArea):
    """"Measured" (the report's summary) beside "The paper" (the claim); a long summary scrolls
    instead of squeezing the plot above it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result = QLabel()
        self.result.setTextFormat(Qt.TextFormat.RichText)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.paper = QLabel()
        inner = QWidget()
        grid = QGridLayout(inner)
        grid.setContentsMargins(0, 0, 0, 0)
        for column, (title, label, stretch) in enumerate((("Measured", self.result, 3), ("The paper", self.paper, 2))):
            label.setWordWrap(True)
            label.setAlignment(Qt.AlignmentFlag.AlignTop)
            box = QGroupBox(title)
            QVBoxLayout(box).addWidget(label)
            grid.addWidget(box, 0, column)
            grid.setColumnStretch(column, stretch)
        self.setWidget(inner)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # The splitter sizes its panes by their hints, and the plot's is large: without a floor the two
        # boxes opened about 50 px high, their first line cut in half.
        self.setMinimumHeight(SUMMARY_MIN_HEIGHT)

    def show_claim(self, claim: str) -> None:
        self.paper.setText(html.escape(claim))

    def show_summary(self, paragraphs: Sequence[object]) -> None:
        """The report's summary paragraphs (Markdown bold kept as bold); empty clears it."""
        self.result.setText("".join(f"<p>{_markdown_bold(html.escape(str(p)))}</p>" for p in paragraphs))


def _markdown_bold(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
