"""An evaluation on disk: report.json, report.md, confusion.png, worst.png and predictions.csv in one folder,
each written atomically (a half-written report is never left under its final name)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from alexgui.engine.data.imageio import ImageError, load_256
from alexgui.engine.store.atomic import atomic_write_bytes, atomic_write_text
from alexgui.engine.understand.evaluation import DEFAULT_WORST, EvaluationReport
from alexgui.engine.understand.figures import agg_figure, png_bytes, png_of_image

REPORT_FILES = ("report.json", "report.md", "confusion.png", "worst.png", "predictions.csv")
_THUMB = 128  # worst.png's tile side, pixels
_LABEL_ROWS = 34  # the caption under each tile
SHEET_MAX = 64  # tiles in worst.png, whatever --worst lists (50,000 tiles would be gigabytes of pixels)


def write_evaluation(out: str | os.PathLike[str], report: EvaluationReport, worst: int = DEFAULT_WORST,
                     data: dict[str, Any] | None = None) -> list[Path]:
    """The report folder `out` (created when missing); returns the files written. `data` is
    report.to_json(worst) when the caller has it already. OSError when the folder cannot be written."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    data = data if data is not None else report.to_json(worst)
    atomic_write_text(folder / "report.json", json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    atomic_write_text(folder / "report.md", markdown(data))
    atomic_write_bytes(folder / "confusion.png", confusion_png(data["classes"], np.asarray(data["confusion"])))
    atomic_write_bytes(folder / "worst.png", png_of_image(worst_sheet(report, min(worst, SHEET_MAX))))
    atomic_write_text(folder / "predictions.csv", predictions_csv(report))
    return [folder / name for name in REPORT_FILES]


def predictions_csv(report: EvaluationReport) -> str:
    """One row per image: its path, true and predicted class, their probabilities, its loss and its top-5."""
    names = report.class_names
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "true", "predicted", "prob_true", "prob_predicted", "loss", "correct", "top5"])
    for r in report.results:
        writer.writerow([r.shown_path, names[r.true_index], names[r.predicted], f"{r.prob_true:.6f}", f"{r.top_probs[0]:.6f}",
                         f"{r.loss:.6f}", int(r.predicted == r.true_index), "|".join(names[i] for i in r.top)])
    return buf.getvalue()


def markdown(data: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.1f}%"

    if not data["n"]:
        return f"# Evaluation\n\nModel: `{data['model']}`  \nImages: `{data['data']}`: no image could be evaluated.\n"
    lines = [
        "# Evaluation",
        "",
        f"Model: `{data['model']}`  ",
        f"Images: `{data['data']}`, {data['n']} images, {data['crop']} crop",
        "",
        f"**Top-1 error {pct(data['top1_error'])}, top-5 error {pct(data['top5_error'])}**",
        "",
        "![Confusion matrix](confusion.png)",
        "",
        "| class | images | precision | recall | top-1 error | top-5 error |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in data["per_class"]:
        lines.append(f"| {row['class']} | {row['n']} | {pct(row['precision'])} | {pct(row['recall'])} | "
                     f"{pct(row['top1_error'])} | {pct(row['top5_error'])} |")
    if data["worst"]:
        lines += ["", "## The images with the highest loss", "", "![The worst images](worst.png)", "",
                  "| image | true | predicted | p(true) | p(predicted) | loss |", "| --- | --- | --- | --- | --- | --- |"]
        for w in data["worst"]:
            lines.append(f"| `{w['path']}` | {w['true']} | {w['predicted']} | {w['prob_true']:.3f} | "
                         f"{w['prob_predicted']:.3f} | {w['loss']:.2f} |")
    if data["unknown_classes"]:
        lines += ["", "Folders that name no class of the model (left out): " + ", ".join(data["unknown_classes"])]
    if data["skipped"]:
        lines += ["", f"## Skipped files ({len(data['skipped'])})", ""]
        lines += [f"- `{s['path']}`: {s['reason']}" for s in data["skipped"]]
    return "\n".join(lines) + "\n"


def confusion_png(classes: list[str], matrix: np.ndarray) -> bytes:
    """The confusion matrix as a heatmap with the counts (up to 30 classes) and both axes named; at 100
    classes the names get 1/10 of the size, still one per row."""
    n = len(classes)
    side = min(max(4.5, 0.42 * n + 2.5), 24.0)
    fig = agg_figure(side + 1.2, side)
    ax = fig.add_subplot()
    shown = np.log1p(matrix) if n > 30 else matrix  # at many classes the diagonal would wash out the errors
    image = ax.imshow(shown, cmap="Blues", interpolation="nearest")
    font = max(4.0, min(9.0, 260.0 / max(n, 1)))
    ax.set_xticks(range(n), [_short(c) for c in classes], rotation=90, fontsize=font)
    ax.set_yticks(range(n), [_short(c) for c in classes], fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true class")
    if n <= 30:
        top = matrix.max() if matrix.size else 0
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=font,
                            color="white" if matrix[i, j] > 0.6 * top else "black")
    fig.colorbar(image, ax=ax, shrink=0.6, label="log(1 + images)" if n > 30 else "images")
    return png_bytes(fig)


def _short(name: str, width: int = 24) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def worst_sheet(report: EvaluationReport, k: int, columns: int = 4) -> np.ndarray:
    """A contact sheet of the k worst images, each captioned with its true and predicted class."""
    from PIL import Image, ImageDraw

    worst = report.worst(k)
    rows = max(1, -(-len(worst) // columns))
    tile_h = _THUMB + _LABEL_ROWS
    sheet = Image.new("RGB", (columns * (_THUMB + 6) + 6, rows * (tile_h + 6) + 6), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    if not worst:
        draw.text((8, 8), "no images", fill=(60, 60, 60))
    names = report.class_names
    for i, r in enumerate(worst):
        x, y = 6 + (i % columns) * (_THUMB + 6), 6 + (i // columns) * (tile_h + 6)
        try:
            thumb = Image.fromarray(load_256(r.path)).resize((_THUMB, _THUMB), Image.Resampling.BILINEAR)
        except ImageError:  # gone or changed since the evaluation: a grey tile, the caption still says what it was
            thumb = Image.new("RGB", (_THUMB, _THUMB), (200, 200, 200))
        sheet.paste(thumb, (x, y))
        draw.text((x, y + _THUMB + 2), _short(f"true: {names[r.true_index]}", 22), fill=(0, 110, 0))
        draw.text((x, y + _THUMB + 17), _short(f"said: {names[r.predicted]} {r.top_probs[0]:.0%}", 22), fill=(170, 0, 0))
    return np.asarray(sheet)
