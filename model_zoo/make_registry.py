"""Regenerate model_zoo/registry.json (a maintainer's tool; the app only reads the JSON).

Needs torchvision, for the 1000 category names of AlexNet_Weights.IMAGENET1K_V1. The WordNet ids come
from imagenet_wnids.txt next to this file (ILSVRC-2012's 1000 synsets, sorted: the sorted order is
the class index order of every ImageNet-1k model, torchvision's included).

    python model_zoo/make_registry.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

# SHA-256 of https://download.pytorch.org/models/alexnet-owt-7be5be79.pth. torchvision itself only
# checks the 8-hex prefix in the file name (7be5be79); the full digest and size were established
# from several independent public manifests that pin this file, and they agree with that prefix.
ALEXNET_SHA256 = "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02"
ALEXNET_BYTES = 244_408_911


def main() -> None:
    from torchvision.models import AlexNet_Weights

    weights = AlexNet_Weights.IMAGENET1K_V1
    categories = list(weights.meta["categories"])
    wnids = (HERE / "imagenet_wnids.txt").read_text().split()
    assert len(categories) == 1000 and len(wnids) == 1000 and wnids == sorted(set(wnids))
    filename = weights.url.rsplit("/", 1)[1]
    assert ALEXNET_SHA256.startswith(filename.rsplit("-", 1)[1].split(".")[0])
    registry = {
        "format": "alexgui-model-zoo/1",
        "models": [
            {
                "name": "torchvision-alexnet",
                "aliases": ["torchvision", "torchvision-alexnet"],
                "title": "torchvision's AlexNet, ImageNet-1k (IMAGENET1K_V1)",
                "arch": "torchvision",
                "url": weights.url,
                "filename": filename,
                "sha256": ALEXNET_SHA256,
                "bytes": ALEXNET_BYTES,
                "format": "torch state_dict (.pth), loaded with weights_only=True",
                "preprocessing": {"mode": "mean_std", "resize": 256, "crop": 224,
                                  "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
                "metrics": {"imagenet_top1_acc": weights.meta["_metrics"]["ImageNet-1K"]["acc@1"],
                            "imagenet_top5_acc": weights.meta["_metrics"]["ImageNet-1K"]["acc@5"]},
                "num_params": weights.meta["num_params"],
                "license": "BSD-3-Clause (torchvision); trained on ImageNet (research and education use)",
                "categories": categories,
                "wnids": wnids,
            }
        ],
    }
    text = json.dumps(registry, indent=1, ensure_ascii=False) + "\n"
    (HERE / "registry.json").write_text(text, encoding="utf-8")
    print(f"wrote {HERE / 'registry.json'}")


if __name__ == "__main__":
    main()
