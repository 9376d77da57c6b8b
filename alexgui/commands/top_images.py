"""`alexgui top-images`: the gallery images (and, for conv units, the patches) that drive one unit most.

    alexgui top-images --model MODEL --images DIR_OR_INDEX --layer LAYER --unit N [--k 9] [--json] [--out DIR]

LAYER is conv1..conv5 (a channel, ranked by its maximum over the map; the receptive-field box around
that maximum is given in the 224 centre crop's pixels) or fc6, fc7, fc8 (a unit, ranked by its value).
--images is a folder of images or a retrieval index (its images). One pass computes every unit of the
layer and is cached, so asking for another unit of the same layer is instant. With --json, a list of
{"path", "activation", "box": [x0, y0, x1, y1] or null}, highest first; with --out, a contact sheet
DIR/LAYER-unitN.png. Exit 2 when the model, gallery, layer or unit cannot be used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from alexgui.commands.arguments import int_in_range

LAYER_CHOICES = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")  # understand.top_units.UNIT_LAYERS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("top-images", help="the images (and patches) that make one unit fire most")
    p.add_argument("--model", required=True, help="checkpoint, run folder, .pth, or 'torchvision' (PyTorch: "
                   "the pass reads the layers' activations)")
    p.add_argument("--images", required=True, metavar="DIR_OR_INDEX", help="a folder of images, or a retrieval index")
    p.add_argument("--layer", required=True, choices=LAYER_CHOICES)
    p.add_argument("--unit", required=True, type=int_in_range(0, 1_000_000), metavar="N",
                   help="the channel (conv) or unit (fc) number, from 0")
    p.add_argument("--k", type=int_in_range(1, 100), default=9, help="how many images (default 9)")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.add_argument("--out", type=Path, metavar="DIR", help="write a contact sheet PNG into DIR")
    p.add_argument("--no-cache", action="store_true", help="compute the pass again even when it is cached")
    p.add_argument("--device", default=None,
                   help="auto (default: CUDA, else Apple's mps, else the CPU), cpu, cuda, cuda:N or mps")
    p.add_argument("--download", action="store_true", help="download torchvision's weights when missing")


def run(args: argparse.Namespace) -> int:
    from alexgui.commands.classify import open_predictor, stderr_progress
    from alexgui.engine.inference.predict import TorchPredictor
    from alexgui.engine.understand.top_units import TopUnitsError, top_images
    from alexgui.engine.understand.top_units_sheet import save_contact_sheet
    from alexgui.paths import cache_dir

    if str(args.model).lower().endswith(".onnx"):
        print(f"alexgui top-images: {args.model}: the pass needs the PyTorch model's layers; give the checkpoint "
              "or run folder it was exported from", file=sys.stderr)
        return 2
    gallery = _gallery(args.images)
    if gallery is None:
        return 2
    args.backend = "torch"
    predictor = open_predictor(args, "top-images")
    if predictor is None:
        return 2
    assert isinstance(predictor, TorchPredictor)
    try:
        tops = top_images(predictor, gallery, args.layer, k=args.k, progress=stderr_progress("images"),
                          cache=None if args.no_cache else cache_dir())
        entries = tops.unit(args.unit, args.k)
    except TopUnitsError as e:
        print(f"alexgui top-images: {e}", file=sys.stderr)
        return 2
    for reason in tops.skipped:
        print(f"skipped {reason}", file=sys.stderr)
    if args.out is not None:
        sheet = args.out / f"{args.layer}-unit{args.unit}.png"
        title = f"{args.layer} unit {args.unit} · top {len(entries)} of {len(tops.paths)} images\n{predictor.source}"
        try:
            save_contact_sheet(entries, sheet, title, predictor.decode_size, predictor.preprocess.crop)
        except OSError as e:
            print(f"alexgui top-images: --out {args.out}: cannot write {sheet.name} there ({e.strerror or e})",
                  file=sys.stderr)
            return 2
        print(f"contact sheet: {sheet}", file=sys.stderr)
    if args.json:
        print(json.dumps([entry.to_json() for entry in entries], indent=1))
    else:
        for n, entry in enumerate(entries, 1):
            box = f"  box {list(entry.box)}" if entry.box is not None else ""
            print(f"{n:>3}. {entry.activation:10.4f}  {entry.path}{box}")
    return 0


def _gallery(spec: str) -> str | list[str] | None:
    """A folder of images as it is, or a retrieval index's image paths; None (reason printed) otherwise."""
    from alexgui.engine.inference.gallery import INDEX_JSON, RetrievalError

    path = Path(spec)
    if (path / INDEX_JSON).is_file():
        from alexgui.engine.inference.retrieval import load_index

        try:
            return list(load_index(path).paths)
        except RetrievalError as e:
            print(f"alexgui top-images: {e}", file=sys.stderr)
            return None
    if not path.is_dir():
        print(f"alexgui top-images: --images {spec}: not a folder of images or a retrieval index", file=sys.stderr)
        return None
    return str(path)
