"""The two towers' experiment in the report: each tower's conv1 colour specificity during training and
in the final checkpoint, which tower took the colour role in each run, and whether that split stands
out of the kernel-to-kernel noise (the paper: one tower colour-agnostic, the other colour-specific)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from alexgui.engine.experiments.curves import downsample
from alexgui.engine.experiments.plan import TOWER_HISTORY, load_tower_history
from alexgui.engine.experiments.stats import compare, spread
from alexgui.engine.store.rundir import RunDir
from alexgui.engine.understand.kernels import colour_specificity, grid_layout, render_grid, rgb_kernel_tiles

if TYPE_CHECKING:
    from alexgui.engine.experiments.run_record import RunRecord

GRID_TILE_PX = 33  # an 11x11 kernel drawn as 3x3-pixel cells


def towers_section(records: list[RunRecord], report: dict[str, Any], images: dict[str, np.ndarray]) -> None:
    per_run: list[dict[str, Any]] = []
    series = []
    lines = []
    for r in records:
        points = load_tower_history(r.path / TOWER_HISTORY)
        for tower in ("0", "1"):
            x = np.array([p["step"] for p in points if tower in p["towers"]], np.float64)
            y = np.array([p["towers"][tower] for p in points if tower in p["towers"]], np.float64)
            xs, ys = downsample(x, y)
            series.append({"variant": f"tower{tower}", "label": f"tower {tower}", "seed": r.seed, "x": xs, "y": ys})
        final = final_conv1(r.path)
        if final is None:
            per_run.append({"seed": r.seed, "colour_tower": None, "message": "no checkpoint to read conv1 from"})
            continue
        kernels, towers = final
        initial = points[0]["towers"] if points else {}
        per_run.append({"seed": r.seed, "step": r.last_step, **tower_split(kernels, towers), "initial_scores": initial})
        name = f"towers-conv1-seed{r.seed}.png"
        images[name] = render_grid(rgb_kernel_tiles(kernels), grid_layout(len(towers), towers, GRID_TILE_PX))
    measured = [p for p in per_run if p.get("colour_tower") is not None]
    splits = spread([p["split"] for p in measured])
    colour_towers = [p["colour_tower"] for p in measured]
    same = len(set(colour_towers)) == 1 if colour_towers else None
    separated = [p for p in measured if p["kernels_compared"]["within_noise"] is False]
    result = {
        "per_run": per_run,
        "colour_tower_per_seed": colour_towers,
        "same_tower_every_run": same,
        "split": splits.to_json(),
        "runs_with_a_clear_split": len(separated),
        "random_init_score": 2 / 3,
    }
    lines.append(
        "Colour specificity of a kernel: the share of its energy off the grey axis R = G = B (0 grey, 1 pure "
        "colour contrast); randomly initialised kernels score about 0.67 on average. A tower's score is the mean "
        "over its 48 conv1 kernels."
    )
    for p in measured:
        verdict = p["kernels_compared"]["verdict"]
        role = (
            f"tower {p['colour_tower']} took the colour role"
            if p["kernels_compared"]["within_noise"] is False
            else f"tower {p['colour_tower']} scored higher, but no tower has clearly taken the colour role"
        )
        lines.append(
            f"Seed {p['seed']} (step {p['step']}): tower 0 {p['scores']['0']:.3f}, tower 1 {p['scores']['1']:.3f}; "
            f"{role}: split {p['split']:.3f} ({verdict}, comparing the 48 kernels of each tower)."
        )
    if measured:
        lines.append(
            f"Across {len(measured)} run(s) the higher-scoring tower was {', '.join(f'tower {t}' for t in colour_towers)}; "
            f"split {splits.text(digits=3)}. The paper: one tower colour-agnostic and the other colour-specific in every "
            f"run. In our model either tower may take the colour role (nothing distinguishes them but the random "
            f"initialisation). Runs whose split stands out of the kernel-to-kernel noise: {len(separated)} of {len(measured)}."
        )
    report["result"] = result
    report["summary"].extend(lines)
    report["tables"].append({
        "title": "Final conv1 colour specificity per tower",
        "header": ["seed", "steps", "tower 0", "tower 1", "colour tower", "split", "noise (kernels)"],
        "rows": [[p["seed"], p["step"], f"{p['scores']['0']:.3f}", f"{p['scores']['1']:.3f}", p["colour_tower"],
                  f"{p['split']:.3f}", p["kernels_compared"]["verdict"]] for p in measured],
    })  # fmt: skip
    report["curves"] = {
        "title": "conv1 colour specificity per tower during training",
        "x_label": "step",
        "y_label": "mean colour specificity",
        "series": series,
        "hline": None,
    }


def tower_split(kernels: np.ndarray, towers: list[int]) -> dict[str, Any]:
    """Which of two towers' RGB kernels are more colour-specific, by how much, and whether that difference
    stands out of the kernel-to-kernel spread (each kernel one sample)."""
    scores = colour_specificity(kernels).astype(np.float64)
    towers_arr = np.asarray(towers)
    by_tower = {t: scores[towers_arr == t] for t in (0, 1)}
    means = {t: float(v.mean()) for t, v in by_tower.items()}
    colour = max(means, key=lambda t: means[t])
    return {
        "colour_tower": colour,
        "scores": {str(t): m for t, m in means.items()},
        "split": means[colour] - means[1 - colour],
        "kernels_compared": compare(by_tower[1 - colour], by_tower[colour]).to_json(),
    }


def final_conv1(run_path: Path) -> tuple[np.ndarray, list[int]] | None:
    """conv1's kernels and their towers from the run's last checkpoint (None without one)."""
    from alexgui.config import RunConfig
    from alexgui.engine.model.networks import build_model
    from alexgui.engine.store.checkpoint import load_checkpoint, split_prefix

    path = RunDir(run_path).last_checkpoint
    if not path.exists():
        return None
    checkpoint = load_checkpoint(path)
    cfg = RunConfig.from_toml(checkpoint.meta["config"], f"{path} (config)")
    model = build_model(cfg.model)
    model.load_state_dict(split_prefix(checkpoint.tensors, "model."))
    return model.kernels("conv1").float().numpy(), model.kernel_towers("conv1")
