"""`alexgui neighbours`: the gallery images nearest to query images (Euclidean distance in fc7).

    alexgui neighbours --index INDEX IMAGE... [--k 8] [--json] [--model MODEL]

The index remembers the model it was built with (its source); --model overrides it. An index built
with different weights, or whose folder changed, is reported as stale on stderr (rebuild it with
`alexgui index`). Exit 0 when every query was answered, 1 when any failed, 2 on a bad index or model.
"""

from __future__ import annotations

import argparse
import json
import sys

from alexgui.commands.arguments import int_in_range, one_device

# More neighbours per query than anyone reads; the gallery's size caps it anyway.
MAX_K = 10_000


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("neighbours", help="nearest gallery images to query images, from an index")
    p.add_argument("--index", required=True, metavar="INDEX", help="index folder made by `alexgui index`")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="query image files")
    p.add_argument("--k", type=int_in_range(1, MAX_K), default=8, help=f"neighbours per query, 1 to {MAX_K} (default 8)")
    p.add_argument("--json", action="store_true", help="print one JSON list instead of text")
    p.add_argument("--model", help="model to embed the queries (default: the one the index was built with)")
    p.add_argument("--device", type=one_device, default="auto",
                   help="auto (default: a CUDA GPU, else Apple's mps, else the CPU), cpu, cuda, cuda:N or mps")


def run(args: argparse.Namespace) -> int:
    from alexgui.engine.inference.predict import PredictorError
    from alexgui.engine.inference.retrieval import (
        RetrievalError,
        load_index,
        model_source,
        nearest,
        query_features,
        stale_reasons,
    )
    from alexgui.engine.inference.sources import load_predictor

    try:
        index = load_index(args.index)
    except RetrievalError as e:
        print(f"alexgui neighbours: {e}", file=sys.stderr)
        return 2
    spec = args.model or model_source(index)
    if not spec:
        print(f"alexgui neighbours: {args.index} does not say which model built it; pass --model", file=sys.stderr)
        return 2
    try:
        predictor = load_predictor(spec, device=args.device)
    except PredictorError as e:
        print(f"alexgui neighbours: {e}", file=sys.stderr)
        return 2
    for reason in stale_reasons(index, predictor.fingerprint):
        print(f"alexgui neighbours: warning: the index is stale: {reason}", file=sys.stderr)
    feats, errors = query_features(predictor, args.images)
    try:
        found = nearest(index, feats, args.k)
    except RetrievalError as e:
        print(f"alexgui neighbours: {e}", file=sys.stderr)
        return 2
    out = []
    for path, error, neighbours in zip(args.images, errors, found):
        if error is not None:
            out.append({"path": path, "error": error})
            if not args.json:
                print(f"{path}: ERROR {error}", flush=True)
            continue
        out.append({"path": path, "neighbours": [{"path": p, "distance": round(d, 6)} for p, d in neighbours]})
        if not args.json:
            print(path)
            for p, d in neighbours:
                print(f"  {d:10.4f}  {p}")
    if args.json:
        json.dump(out, sys.stdout, indent=1)
        print()
    return 1 if any(e is not None for e in errors) else 0
