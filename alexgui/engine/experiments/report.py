"""An experiment's report: report.json (everything measured), report.md (for people) and PNG plots.

The plots are drawn with matplotlib's Agg renderer through its object-oriented API (Figure +
FigureCanvasAgg, no pyplot), so nothing here touches a display, a global backend or Qt; matplotlib is
imported only when a report is written. Every file is written atomically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alexgui.engine.store.atomic import atomic_write_bytes, atomic_write_text
from alexgui.engine.understand.figures import agg_figure, png_bytes, png_of_image

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
# The same Tableau 10 colours as the app's plots (alexgui/qt/plots.py), readable in print.
COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7")
DPI = 110


def write_report(out: str | Path, report: dict[str, Any], images: dict[str, np.ndarray] | None = None) -> list[Path]:
    """Write the plots, then report.json and report.md (which name the plots); return every file written."""
    out = Path(out)
    written: list[Path] = []
    plots: list[str] = []
    for name, png in _plots(report).items():
        atomic_write_bytes(out / name, png)
        plots.append(name)
    for name, image in (images or {}).items():
        atomic_write_bytes(out / name, png_of_image(image))
        plots.append(name)
    report["plots"] = plots
    written.extend(out / name for name in plots)
    atomic_write_text(out / REPORT_JSON, json.dumps(_finite(report), indent=1, ensure_ascii=False) + "\n")
    atomic_write_text(out / REPORT_MD, markdown(report))
    written += [out / REPORT_JSON, out / REPORT_MD]
    return written


def load_report(path: str | Path) -> dict[str, Any]:
    """A report.json (or the folder holding one); ValueError naming the file when it is not one."""
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read the report ({e})") from None
    if not isinstance(data, dict) or not str(data.get("format", "")).startswith("alexgui-experiment-report/"):
        raise ValueError(f"{path}: not an alexgui experiment report")
    return data


# ---- Markdown ------------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    data, settings = report["data"], report["settings"]
    lines = [
        f"# {report['title']}",
        "",
        f"*`alexgui experiment {report['experiment']}` · {report['created']} · alexgui {report['alexgui_version']}*",
        "",
        f"**Question.** {report['question']}",
        "",
        f"**The paper.** {report['paper']['claim']}",
        "",
        "## What was measured, on what",
        "",
        f"- Data: `{data['source']}`: {data['classes'] or '?'} classes, {data['train_images'] or '?'} training and "
        f"{data['val_images'] or '?'} validation images (chance top-1 error "
        f"{percent(data['chance_top1_error'])}).",
        f"- Runs: {report['seeds']} seed(s) per variant (seeds 0..{report['seeds'] - 1}), {len(report['runs'])} runs in all, "
        "each an ordinary run folder beside this report.",
        f"- Training: the paper's network ({settings['arch']}), {settings['epochs']} epoch(s)"
        f"{', at most ' + str(settings['max_steps']) + ' steps' if settings['max_steps'] else ''}, batch "
        f"{settings['batch_size']}, learning rate {settings['lr']:g}, crop {settings['crop']}, on "
        f"{_device_text(settings)}.",
        f"- Noise: {report['noise_rule']}.",
        "",
        "## Result",
        "",
    ]
    for paragraph in report["summary"]:
        lines += [paragraph, ""]
    for table in report["tables"]:
        lines += [f"### {table['title']}", "", *_table(table["header"], table["rows"]), ""]
    for name in report.get("plots", []):
        lines += [f"![{name}]({name})", ""]
    lines += ["## Runs", "", *_table(
        ["folder", "status", "steps", "epochs", "val top-1", "val top-5"],
        [[f"[{r['path']}]({r['path']})", r["status"] + (f" ({r['message']})" if r["message"] else ""), r["steps"],
          r["epochs_completed"], percent(r["final_val_top1"]), percent(r["final_val_top5"])] for r in report["runs"]],
    ), ""]  # fmt: skip
    lines += ["Open the run folders in the app (Runs, Open) to overlay their curves.", ""]
    return "\n".join(lines)


def _table(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return out


def percent(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.2f}%"


def _finite(value: Any) -> Any:
    """NaN and infinities as null: report.json stays strict JSON that any reader accepts."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# ---- plots ----------------------------------------------------------------------------------------


def _plots(report: dict[str, Any]) -> dict[str, bytes]:
    name = report["experiment"]
    out: dict[str, bytes] = {}
    if report.get("curves"):
        out[f"{name}-curves.png"] = _curves_png(report)
    if report["kind"] == "ablation" and report.get("bars"):
        out[f"{name}-final.png"] = _bars_png(report["bars"])
    if report["kind"] == "speed":
        out[f"{name}-speedup.png"] = _speedup_png(report["result"])
    return out


def _figure(width: float, height: float) -> Any:
    return agg_figure(width, height, DPI)


def _curves_png(report: dict[str, Any]) -> bytes:
    curves = report["curves"]
    fig = _figure(7.5, 4.2)
    ax = fig.add_subplot()
    colours: dict[str, str] = {}
    styles = ("-", "--", ":", "-.")
    for s in curves["series"]:
        colour = colours.setdefault(s["variant"], COLOURS[len(colours) % len(COLOURS)])
        first_of_variant = not any(line.get_label() == s["label"] for line in ax.get_lines())
        marker = "o" if len(s["x"]) < 30 else None
        ax.plot(s["x"], s["y"], color=colour, linestyle=styles[s["seed"] % len(styles)], marker=marker, markersize=3,
                linewidth=1.4, label=s["label"] if first_of_variant else "_nolegend_")
    if curves.get("hline"):
        ax.axhline(curves["hline"]["y"], color="#555555", linestyle=":", linewidth=1, label=curves["hline"]["label"])
    ax.set_title(curves["title"] + (" — line style: seed 0 solid, 1 dashed, 2 dotted" if report["seeds"] > 1 else ""),
                 fontsize=9)
    ax.set_xlabel(curves["x_label"])
    if curves["x_label"] == "epoch":
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(curves["y_label"])
    ax.grid(alpha=0.3)
    if any(not line.get_label().startswith("_") for line in ax.get_lines()):
        ax.legend(fontsize=8)
    if not any(len(s["x"]) for s in curves["series"]):
        ax.text(0.5, 0.5, "nothing logged yet", transform=ax.transAxes, ha="center", va="center", color="#888888")
    return png_bytes(fig)


def _bars_png(bars: dict[str, Any]) -> bytes:
    fig = _figure(6.0, 4.0)
    ax = fig.add_subplot()
    groups = bars["groups"]
    n = len(bars["variants"])
    width = 0.8 / n
    rng = np.random.default_rng(0)  # horizontal jitter of the seed dots, fixed so reports are reproducible
    labelled = False
    for i, v in enumerate(bars["variants"]):
        colour = COLOURS[i % len(COLOURS)]
        for g, values in enumerate(v["values"]):
            x = g + (i - (n - 1) / 2) * width
            vals = np.asarray(values, np.float64) * 100
            if len(vals) == 0:
                continue
            std = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
            ax.bar(x, vals.mean(), width * 0.9, color=colour, alpha=0.55, label=v["label"] if g == 0 else "_nolegend_",
                   yerr=std if len(vals) > 1 else None, capsize=4)
            labelled = labelled or g == 0
            ax.scatter(x + rng.uniform(-width * 0.2, width * 0.2, len(vals)), vals, color=colour, edgecolor="black",
                       linewidth=0.5, s=18, zorder=3)
    ax.set_xticks(range(len(groups)), [f"validation {g} error" for g in groups])
    ax.set_ylabel("error (%)")
    ax.set_title(bars["title"], fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    if labelled:
        ax.legend(fontsize=8)
    return png_bytes(fig)


def _speedup_png(result: dict[str, Any]) -> bytes:
    fig = _figure(4.2, 4.0)
    ax = fig.add_subplot()
    paper = result["paper_speedup"]
    ax.bar(1, paper, 0.6, color="#bbbbbb")
    if result["speedup"] is not None:
        per_seed = np.asarray(result["speedup_per_seed"], np.float64)
        ax.bar(0, result["speedup"], 0.6, color=COLOURS[0], alpha=0.7,
               yerr=float(per_seed.std(ddof=1)) if len(per_seed) > 1 else None, capsize=4)
        ax.scatter(np.zeros(len(per_seed)), per_seed, color=COLOURS[0], edgecolor="black", s=18, zorder=3)
        caption = f"{result['speedup']:.2f}x"
    elif result["speedup_at_least"] is not None:
        ax.bar(0, result["speedup_at_least"], 0.6, color=COLOURS[0], alpha=0.35, hatch="//")
        caption = f"≥ {result['speedup_at_least']:.2f}x"
    else:
        caption = "target not reached"
    ax.set_xlim(-0.6, 1.6)
    ax.text(0, ax.get_ylim()[1] * 0.5, caption, ha="center", va="center", fontsize=10)
    ax.set_xticks([0, 1], ["measured\n(this data)", "paper\n(CIFAR-10, 4 layers)"])
    ax.set_ylabel("steps(tanh) / steps(ReLU) to the target")
    ax.set_title(f"ReLU speed-up at {percent(result['target_error'])} training error", fontsize=9)
    ax.axhline(1.0, color="#555555", linewidth=0.8, linestyle=":")
    ax.grid(axis="y", alpha=0.3)
    return png_bytes(fig)


def _device_text(settings: dict) -> str:
    """The device the runs used; " (bf16)" only when the device's own label does not already say which
    precision ran (a CPU without bf16 says "fp32: ..." there)."""
    device = str(settings.get("device_used") or settings["device"])
    if settings.get("bf16") and "bf16" not in device and "fp32" not in device:
        device += " (bf16)"
    return device
