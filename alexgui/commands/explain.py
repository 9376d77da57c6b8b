"""`alexgui explain`: where the network looked, as maps over each image's 224x224 centre crop.

    alexgui explain --model MODEL IMAGE_OR_DIR... [--method gradcam|occlusion|guided-backprop|saliency]
                    [--class NAME_OR_INDEX] [--patch P] [--stride S] [--opacity A] [--out DIR] [--json]

For each image: DIR/NAME.METHOD.png (the crop and the map over it, side by side, with a caption) and
DIR/NAME.METHOD.npy (the (224, 224) float32 map in 0..1, in the crop's coordinates). The class is each
image's top class unless --class names one. With --json, a list on stdout: {"path", "method", "class",
"index", "prob", "map", "peak": [row, col], "overlay"}, or {"path", "error"} for a file that failed.
Exit 0 when every image was explained, 1 when any failed, 2 when the model or the options cannot be used.
"""

from __future__ import annotations

import argparse
import json
import sys

from alexgui.commands.arguments import int_in_range, number_in_range
from alexgui.config import Range

METHOD_CHOICES = ("gradcam", "occlusion", "guided-backprop", "saliency")  # engine.understand.explain.METHODS
DEFAULT_OUT = "explanations"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="Grad-CAM, occlusion, guided backpropagation or saliency maps of images")
    p.add_argument("--model", required=True, help="checkpoint, run folder, .pth, or 'torchvision' (not ONNX: "
                   "the maps need the PyTorch network's gradients)")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="image files and/or folders of images")
    p.add_argument("--method", choices=METHOD_CHOICES, default="gradcam",
                   help="gradcam (default): conv5's class-weighted maps, both towers; occlusion: the drop in "
                   "the class's probability when a mean-image patch hides each place; guided-backprop; saliency")
    p.add_argument("--class", dest="class_", metavar="NAME_OR_INDEX",
                   help="the class to explain (a name or an index; default: each image's top class)")
    p.add_argument("--patch", type=int_in_range(1, 224), default=32, metavar="P",
                   help="occlusion: the patch's side in pixels (default 32)")
    p.add_argument("--stride", type=int_in_range(1, 224), default=16, metavar="S",
                   help="occlusion: pixels between patches (default 16)")
    p.add_argument("--opacity", type=number_in_range(Range(0.0, 1.0)), default=0.5, metavar="A",
                   help="the map's opacity over the image in the PNG, 0..1 (default 0.5)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"where the PNG and .npy files go (default ./{DEFAULT_OUT})")
    p.add_argument("--json", action="store_true", help="print one JSON list instead of text")
    p.add_argument("--device", default=None,
                   help="auto (default: CUDA, else Apple's mps, else the CPU), cpu, cuda, cuda:N or mps")
    p.add_argument("--download", action="store_true", help="download torchvision's weights when missing")


def run(args: argparse.Namespace) -> int:
    from alexgui.commands.classify import open_predictor, say_no_images
    from alexgui.engine.data.imageio import ImageError
    from alexgui.engine.data.walk import display_path
    from alexgui.engine.inference.predict import expand_inputs
    from alexgui.engine.understand.explain import ExplainError, explain, resolve_class, torch_predictor
    from alexgui.engine.understand.explain_files import output_stems, write_explanation

    if str(args.model).lower().endswith(".onnx"):
        print(f"alexgui explain: {args.model}: explanations need the PyTorch model (gradients); give the "
              "checkpoint or run folder it was exported from", file=sys.stderr)
        return 2
    if not str(args.out).strip():
        print("alexgui explain: argument --out: an empty folder name", file=sys.stderr)
        return 2
    args.backend = "torch"
    predictor = open_predictor(args, "explain")
    if predictor is None:
        return 2
    try:
        torch_predictor(predictor)
        class_index = resolve_class(predictor, args.class_) if args.class_ is not None else None
    except ExplainError as e:
        print(f"alexgui explain: {e}", file=sys.stderr)
        return 2
    paths = expand_inputs(args.images)
    if not paths:
        say_no_images("explain", args.images)
        return 1
    if not args.json:
        print(f"model {predictor.source}; {args.method} of {len(paths)} image(s) into {args.out}", file=sys.stderr)
    results: list[dict] = []
    failed = 0
    for path, stem in zip(paths, output_stems(paths, args.method)):
        shown = display_path(path) or repr("")
        try:
            if not path:
                raise ImageError(path, "an empty file name")
            u8 = predictor.load_image(path)
            expl = explain(predictor, u8, args.method, class_index, patch=args.patch, stride=args.stride)
            png, npy = write_explanation(args.out, stem, expl, args.opacity)
        except ImageError as e:
            failed += 1
            results.append({"path": shown, "error": e.reason})
        except ExplainError as e:
            failed += 1
            results.append({"path": shown, "error": str(e)})
        except OSError as e:
            print(f"alexgui explain: {args.out}: cannot write ({e.strerror or e})", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("\nalexgui explain: interrupted", file=sys.stderr)
            return 130
        else:
            row, col = expl.peak
            results.append({"path": shown, "method": expl.method, "class": expl.class_name, "index": expl.class_index,
                            "prob": round(expl.prob, 6), "map": str(npy), "peak": [row, col], "overlay": str(png)})
        if not args.json:
            r = results[-1]
            if "error" in r:
                print(f"{shown}: ERROR {r['error']}", flush=True)
            else:
                print(f"{shown}: {r['class']} {100 * r['prob']:.1f}%, peak at row {row}, column {col} -> {png}", flush=True)
    if args.json:
        json.dump(results, sys.stdout, indent=1, ensure_ascii=False)
        print()
    if failed:
        print(f"alexgui explain: {failed} of {len(paths)} file(s) could not be explained", file=sys.stderr)
    return 1 if failed else 0
