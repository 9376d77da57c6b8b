"""`alexgui map`: a 2-D map of an index's fc7 space, as a PNG (one dot per image, coloured by class)
and/or JSON.

    alexgui map --index INDEX --out map.png [--method tsne|pca] [--seed N] [--json]

The class of an image is its folder's name. The map is cached in the index folder and reused while the
index is unchanged (alexgui.engine.understand.feature_space). --json prints [{"path", "x", "y"}] on
stdout, x and y in [-1, 1]. Progress goes to stderr. Exit 0 on success, 2 on a bad index or output.
"""

from __future__ import annotations

import argparse
import json
import sys

from alexgui.commands.arguments import int_in_range

MAX_SEED = 2**31 - 1  # openTSNE seeds numpy's RandomState, which takes 32-bit seeds


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("map", help="a 2-D map (t-SNE or PCA) of an index's fc7 features, as PNG or JSON")
    p.add_argument("--index", required=True, metavar="INDEX", help="index folder made by `alexgui index`")
    p.add_argument("--out", metavar="PNG", help="write the map as a PNG picture here")
    p.add_argument("--method", choices=["tsne", "pca"], default="tsne",
                   help="tsne (default: neighbourhoods kept, clusters apart) or pca (the two directions of largest "
                   "variance; exact and quick)")
    p.add_argument("--seed", type=int_in_range(0, MAX_SEED), default=0,
                   help="t-SNE's seed: the same index, method and seed give the same map (default 0)")
    p.add_argument("--json", action="store_true", help='print [{"path", "x", "y"}] on stdout')


def run(args: argparse.Namespace) -> int:
    from alexgui.commands.classify import stderr_progress
    from alexgui.engine.inference.retrieval import load_index, stale_reasons
    from alexgui.engine.store.atomic import atomic_write_bytes
    from alexgui.engine.understand.feature_map_figure import map_png
    from alexgui.engine.understand.feature_space import METHOD_NAMES, compute_map
    from alexgui.errors import AlexguiError

    if not args.out and not args.json:
        print("alexgui map: nothing to write: give --out PNG, --json, or both", file=sys.stderr)
        return 2
    try:
        index = load_index(args.index)
        for reason in stale_reasons(index):
            print(f"alexgui map: warning: the index is stale: {reason}", file=sys.stderr)
        fmap = compute_map(index, args.method, args.seed,
                           progress=stderr_progress(f"mapping ({METHOD_NAMES[args.method]})", unit="steps"))
    except AlexguiError as e:
        print(f"alexgui map: {e}", file=sys.stderr)
        return 2
    if fmap.from_cache:
        print(f"alexgui map: the map cached in {fmap.cached_at} is current; not computed again", file=sys.stderr)
    if args.out:
        try:
            atomic_write_bytes(args.out, map_png(fmap))
        except OSError as e:
            print(f"alexgui map: {args.out}: cannot write the picture ({e.strerror or e})", file=sys.stderr)
            return 2
        print(f"alexgui map: {len(fmap)} images mapped by {METHOD_NAMES[fmap.method]} into {args.out}", file=sys.stderr)
    if args.json:
        json.dump(fmap.to_json(), sys.stdout, indent=1)
        print()
    return 0
