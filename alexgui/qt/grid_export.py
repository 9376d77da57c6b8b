"""Grids saved as pictures: each heading above its grid, in an image exactly as large as its content.

Grabbing the panel saved the widget as it was laid out: the scroll area's full width and height,
most of it empty below a conv2 grid. `compose` draws the headings (rich text, wrapped to the
grids' width) and the grids themselves on the panel's background, with a small margin and no more.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPointF
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QTextDocument

from alexgui.engine.store.atomic import atomic_target

MARGIN = 8  # around the content
SPACING = 6  # between a heading and its grid, and between sections
BACKGROUND = "#1f2429"  # the panels' background in resources/style.qss
TEXT = "#c9d1d9"


def compose(sections: list[tuple[str, QImage]], font: QFont | None = None) -> QImage:
    """(heading as rich text, grid image) pairs, top to bottom, as one image; empty grids are left out."""
    sections = [(heading, image) for heading, image in sections if not image.isNull()]
    if not sections:
        return QImage()
    inner = max(image.width() for _, image in sections)
    docs = []
    for heading, _ in sections:
        doc = QTextDocument()
        doc.setDocumentMargin(0)
        if font is not None:
            doc.setDefaultFont(font)
        doc.setDefaultStyleSheet(f"body {{ color: {TEXT}; }}")
        doc.setHtml(f"<body>{heading}</body>")
        doc.setTextWidth(inner)  # wrapped to the grid's width, as the panel wraps it to its own
        docs.append(doc)
    height = 2 * MARGIN + sum(int(doc.size().height() + 0.999) + SPACING + image.height() for doc, (_, image)
                              in zip(docs, sections)) + SPACING * (len(sections) - 1)
    out = QImage(inner + 2 * MARGIN, height, QImage.Format.Format_RGB32)
    out.fill(QColor(BACKGROUND))
    painter = QPainter(out)
    y = MARGIN
    for doc, (_, image) in zip(docs, sections):
        painter.save()
        painter.translate(MARGIN, y)
        doc.drawContents(painter)
        painter.restore()
        y += int(doc.size().height() + 0.999) + SPACING
        painter.drawImage(QPointF(MARGIN, y), image)
        y += image.height() + SPACING
    painter.end()
    return out


def save_png(image: QImage, path: str | Path) -> None:
    """Write the image as a PNG atomically (a half-written file never replaces a good one); raises OSError."""
    if image.isNull():
        raise OSError(f"{path}: nothing to save yet")
    with atomic_target(path) as tmp:
        if not image.save(str(tmp), "PNG"):
            raise OSError(f"{path}: Qt could not write the PNG")
