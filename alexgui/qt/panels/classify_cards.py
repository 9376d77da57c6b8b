"""One classified image as the Classify panel shows it (paper, Figure 4 left): a card with the
thumbnail, the top 5 classes as probability bars, the true class when the file's folder or name tells
it, and the time it took; or, for a file that is not an image, the reason.

Class names that are ImageNet WordNet ids ("n02096294") are shown with their readable names
("Australian terrier (n02096294)"). Every text fits the card's width, which is the side dock's (about
380 pixels at 1280x800): labels wrap, and the bars' labels are elided with the full rows on hover.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPaintEvent, QPixmap
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from alexgui.engine.inference.predict import Classified
from alexgui.qt.model_names import class_label, short_class_label
from alexgui.qt.tile_grid import numpy_to_qimage

THUMB = 96
BAR_BLUE = QColor(70, 120, 200)
BAR_GREEN = QColor(60, 160, 80)
ERROR_RED = "#b3261e"
MUTED = "#8b949e"  # the theme's secondary text (resources/style.qss)
LABEL_MIN, LABEL_MAX = 0.30, 0.58  # the label column's share of the width


class ProbabilityBars(QWidget):
    """Top-k classes as horizontal bars; the true class green (and added below the top k when it is
    not among them), the others blue."""

    ROW = 18

    def __init__(self, result: Classified, class_names: Sequence[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result = result
        shown = [(t.label, t.prob, t.index == result.true_index) for t in result.top]
        if result.true_index is not None and all(t.index != result.true_index for t in result.top):
            shown.append((class_names[result.true_index], result.true_prob or 0.0, True))
        # The bars have room for the readable name only ("Shih-Tzu", elided if need be); the tooltip
        # has every row in full, with its WordNet id ("Shih-Tzu (n02086240)").
        self.rows = [(short_class_label(name), p, true) for name, p, true in shown]
        self.setToolTip("\n".join(f"{100 * p:.1f}%  {class_label(name)}{'  (true class)' if true else ''}"
                                  for name, p, true in shown))
        self.setMinimumHeight(self.ROW * len(self.rows) + 2)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:
        return QSize(360, self.ROW * len(self.rows) + 2)

    def minimumSizeHint(self) -> QSize:
        return QSize(120, self.ROW * len(self.rows) + 2)

    def label_width(self) -> int:
        """As wide as the longest label needs, within LABEL_MIN..LABEL_MAX of the width."""
        bold = QFont(self.font())
        bold.setBold(True)
        widest = max((QFontMetrics(bold).horizontalAdvance(label) for label, _, _ in self.rows), default=0) + 8
        return int(min(max(widest, self.width() * LABEL_MIN), self.width() * LABEL_MAX))

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        width = self.width()
        label_w = self.label_width()
        bold = QFont(self.font())
        bold.setBold(True)
        percent_w = QFontMetrics(bold).horizontalAdvance("100.0%") + 2  # the widest it gets, in bold
        bar_w = max(width - label_w - percent_w - 4, 1)
        text_color = self.palette().windowText().color()
        for row, (label, prob, is_true) in enumerate(self.rows):
            y = row * self.ROW + 1
            font = QFont(self.font())
            font.setBold(is_true)
            painter.setFont(font)
            painter.setPen(BAR_GREEN.lighter(130) if is_true else text_color)
            painter.drawText(QRectF(0, y, label_w - 6, self.ROW), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                             painter.fontMetrics().elidedText(label, Qt.TextElideMode.ElideRight, label_w - 6))
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(128, 128, 128, 40))
            painter.drawRoundedRect(QRectF(label_w, y + 3, bar_w, self.ROW - 6), 2, 2)
            painter.setBrush(BAR_GREEN if is_true else BAR_BLUE)
            painter.drawRoundedRect(QRectF(label_w, y + 3, max(1.0, bar_w * prob), self.ROW - 6), 2, 2)
            painter.setPen(text_color)
            painter.drawText(QRectF(label_w + bar_w + 4, y, percent_w, self.ROW),
                             Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                             f"{100 * prob:.1f}%")
        painter.end()


class ResultCard(QFrame):
    """One image: thumbnail, name, bars (or the reason it could not be classified), time, and an
    Explain button (the Explain window: where the network looked)."""

    def __init__(self, result: Classified, class_names: Sequence[str], crops: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result = result
        self.setFrameShape(QFrame.Shape.StyledPanel)
        thumb = QLabel()
        thumb.setFixedSize(THUMB, THUMB)
        thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        if result.image is not None:
            pix = QPixmap.fromImage(numpy_to_qimage(result.image)).scaled(
                THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
            thumb.setPixmap(pix)
        else:
            thumb.setText("✕")
            thumb.setStyleSheet(f"color: {ERROR_RED}; font-size: 28px; border: 1px dashed {ERROR_RED};")
        # A file name is one long word: let it wrap after its underscores, hyphens and dots too.
        breakable = re.sub(r"([_.\-])", "\\1\u200b", html.escape(Path(result.path).name))
        title = QLabel(f"<b>{breakable}</b>")
        title.setToolTip(result.path)
        # Every text wraps: the card must fit a narrow side dock (about 380 pixels at 1280x800).
        title.setWordWrap(True)
        title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        right = QVBoxLayout()
        right.setSpacing(2)
        right.addWidget(title)
        self.truth: QLabel | None = None
        if result.error is not None:
            self.message = QLabel(result.error)
            self.message.setWordWrap(True)
            self.message.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            self.message.setStyleSheet(f"color: {ERROR_RED};")
            right.addWidget(self.message)
        else:
            self.bars = ProbabilityBars(result, class_names)
            right.addWidget(self.bars)
            if result.true_index is not None:
                # Its own wrapped line: a long name (or a wnid with its name) is never cut.
                hit = bool(result.top) and result.top[0].index == result.true_index
                name = html.escape(class_label(class_names[result.true_index]))
                percent = f" ({100 * result.true_prob:.1f}%)" if result.true_prob is not None else ""
                self.truth = QLabel(f"true class <b>{name}</b>{percent} {'✓' if hit else '✗'}")
                self.truth.setWordWrap(True)
                self.truth.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
                right.addWidget(self.truth)
            self.message = QLabel(f"<span style='color:{MUTED}'>{result.ms:.0f} ms · {crops}</span>")
            self.message.setWordWrap(True)
            self.message.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            self.explain_button = QPushButton("Explain")
            self.explain_button.setToolTip("Where the network looked: Grad-CAM, occlusion or guided "
                                           "backpropagation over this image, for any of its top 5 classes")
            self.explain_button.setEnabled(result.image is not None)
            footer = QHBoxLayout()
            footer.addWidget(self.message, 1)
            footer.addWidget(self.explain_button, 0, Qt.AlignmentFlag.AlignBottom)
            right.addLayout(footer)
        right.addStretch(1)
        layout = QHBoxLayout(self)
        layout.addWidget(thumb, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(right, 1)
