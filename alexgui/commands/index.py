"""`alexgui index`: build a nearest-neighbour gallery index (fc7 features) of an image folder.

    alexgui index --model MODEL --images DIR --out INDEX [--dtype float16|float32]

INDEX is a folder (index.json + a .npy of features); see alexgui.engine.inference.retrieval. Unreadable
files are skipped and listed. Exit 0 on success, 1 when nothing could be indexed, 2 on a bad model.
"""

from __future__ import annotations

import argparse
import sys

from alexgui.commands.arguments import existing_folder, int_in_range, one_device

# Beyond this a batch only adds memory: conv1's output alone is about 1.1 MB per image.
MAX_BATCH = 1024


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="build a retrieval index of an image folder (fc7 features)")
    p.add_argument("--model", required=True, help="checkpoint, run folder, ONNX file, .pth, or 'torchvision'")
    p.add_argument("--images", required=True, type=existing_folder, metavar="DIR",
                   help="folder of gallery images (searched recursively)")
    p.add_argument("--out", required=True, metavar="INDEX", help="index folder to write (replaced atomically)")
    p.add_argument("--dtype", choices=["float16", "float32"], default="float16",
                   help="storage precision of the features (default float16: half the size; searched in float32)")
    p.add_argument("--batch-size", type=int_in_range(1, MAX_BATCH), default=16,
                   help=f"images per forward pass, 1 to {MAX_BATCH} (default 16)")
    p.add_argument("--device", type=one_device, default="auto",
                   help="auto (default: a CUDA GPU, else Apple's mps, else the CPU), cpu, cuda, cuda:N or mps")


def run(args: argparse.Namespace) -> int:
    from alexgui.commands.classify import stderr_progress
    from alexgui.engine.inference.predict import PredictorError
    from alexgui.engine.inference.retrieval import (
        RetrievalError,
        build_index,
        check_index_folder,
        save_index,
    )
    from alexgui.engine.inference.sources import load_predictor

    try:
        check_index_folder(args.out)  # before any work: never over another tool's index.json or files
    except RetrievalError as e:
        print(f"alexgui index: {e}", file=sys.stderr)
        return 2
    try:
        predictor = load_predictor(args.model, device=args.device)
    except PredictorError as e:
        print(f"alexgui index: {e}", file=sys.stderr)
        return 2
    try:
        index = build_index(predictor, args.images, progress=stderr_progress("indexing", unit="images"),
                            batch_size=args.batch_size, dtype=args.dtype)
        save_index(index, args.out)
    except RetrievalError as e:
        print(f"alexgui index: {e}", file=sys.stderr)
        return 1
    for item in index.skipped:
        print(f"skipped {item['path']}: {item['reason']}", file=sys.stderr)
    print(f"indexed {len(index)} images ({index.storage_dtype}, {index.features.shape[1]}-d) into {args.out}"
          + (f"; {len(index.skipped)} skipped" if index.skipped else ""))
    return 0
