"""PNG figures without a display: matplotlib's Agg renderer through its object-oriented API (Figure +
FigureCanvasAgg, no pyplot), so nothing touches a global backend or Qt; matplotlib is imported only when
a figure is drawn. Shared by the evaluation report and the experiments' reports."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

DPI = 110


def agg_figure(width: float, height: float, dpi: int = DPI) -> Any:
    """A matplotlib Figure of width x height inches drawn by Agg."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas: PNG through Agg, no pyplot, no GUI
    return fig


def png_bytes(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def png_of_image(image: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 array as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
