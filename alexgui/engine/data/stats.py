"""Mean image and PCA colour statistics of a training set (paper sections 2 and 4.1).

One pass over the decoded 256x256 training images gives both:
- the mean image, subtracted from every input ("the mean activity over the training set");
- the 3x3 covariance of RGB values over ALL training pixels, whose eigenvectors p_i and eigenvalues
  lambda_i drive the PCA colour augmentation.

Numerics: pixels are integers in 0..255, so the sums are accumulated EXACTLY as integers (per-pixel
sums in int64; channel sums and sums of outer products as Python integers, each chunk's products
computed in float64, which is exact while a chunk's sums stay below 2**53). The covariance is then
(N * sum(x x^T) - sum(x) sum(x)^T) / N^2 in exact integer arithmetic, rounded to float64 once, so the
two-moment formula loses nothing to cancellation however many images there are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from alexgui.errors import Cancelled

ProgressFn = Callable[[int, int], None]  # (images done, images in total)

TENSOR_KEYS = ("stats.mean_image", "stats.pca_eigvals", "stats.pca_eigvecs")

# Images converted to float64 at a time for the outer products: bounds the temporary memory
# (8 images of 256x256x3 in float64 is 12.6 MB) and keeps each chunk's sums exact (< 2**53).
_CHUNK_IMAGES = 8


# compute_stats was asked to stop (the `stop` event was set) before it finished: the one Cancelled.
StatsStopped = Cancelled


class _StopFlag(Protocol):
    def is_set(self) -> bool: ...


class _Images(Protocol):
    def __len__(self) -> int: ...

    def batches(self, indices: np.ndarray, batch_size: int, workers: int = 0): ...


@dataclass
class DataStats:
    mean_image: np.ndarray  # (H, W, 3) float32 on the 0..255 scale (H = W = 256 for the paper)
    pca_eigvals: np.ndarray  # (3,) float32, descending: variances along the principal colour axes
    pca_eigvecs: np.ndarray  # (3, 3) float32, eigenvector i is COLUMN i (matching pca_eigvals[i])
    n_images: int = 0  # images the statistics came from (0: unknown, e.g. rebuilt from a checkpoint)
    n_pixels: int = 0  # pixels the covariance came from

    def __post_init__(self) -> None:
        self.mean_image = np.asarray(self.mean_image, dtype=np.float32)
        self.pca_eigvals = np.asarray(self.pca_eigvals, dtype=np.float32)
        self.pca_eigvecs = np.asarray(self.pca_eigvecs, dtype=np.float32)
        m = self.mean_image
        if m.ndim != 3 or m.shape[2] != 3:
            raise ValueError(f"DataStats: mean_image must be (H, W, 3), got {m.shape}")
        if self.pca_eigvals.shape != (3,):
            raise ValueError(f"DataStats: pca_eigvals must be (3,), got {self.pca_eigvals.shape}")
        if self.pca_eigvecs.shape != (3, 3):
            raise ValueError(f"DataStats: pca_eigvecs must be (3, 3), got {self.pca_eigvecs.shape}")
        for name in ("mean_image", "pca_eigvals", "pca_eigvecs"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f"DataStats: {name} has values that are not finite")
        if np.any(self.pca_eigvals < 0):
            raise ValueError(f"DataStats: pca_eigvals must not be negative, got {self.pca_eigvals}")

    def to_tensors(self) -> dict[str, Tensor]:
        """The tensors a checkpoint stores (keys in TENSOR_KEYS)."""
        return {
            "stats.mean_image": torch.from_numpy(self.mean_image.copy()),
            "stats.pca_eigvals": torch.from_numpy(self.pca_eigvals.copy()),
            "stats.pca_eigvecs": torch.from_numpy(self.pca_eigvecs.copy()),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], n_images: int = 0, n_pixels: int = 0) -> DataStats:
        """Rebuild from a checkpoint's tensors, named as in TENSOR_KEYS or without the "stats." prefix.

        Raises ValueError naming a missing or malformed tensor.
        """
        missing = [k for k in TENSOR_KEYS if find_stat_tensor(tensors, k) is None]
        if missing:
            raise ValueError(f"statistics tensors missing: {', '.join(missing)}")
        arrays = {}
        for key in TENSOR_KEYS:
            t = find_stat_tensor(tensors, key)
            if not isinstance(t, Tensor) or not t.is_floating_point():
                raise ValueError(f"{key}: expected a floating-point tensor")
            arrays[key] = t.detach().to("cpu", torch.float32).numpy()
        try:
            return cls(
                mean_image=arrays["stats.mean_image"],
                pca_eigvals=arrays["stats.pca_eigvals"],
                pca_eigvecs=arrays["stats.pca_eigvecs"],
                n_images=n_images,
                n_pixels=n_pixels,
            )
        except ValueError as e:
            raise ValueError(f"statistics tensors: {e}") from None


def find_stat_tensor(tensors: dict[str, Tensor], key: str) -> Tensor | None:
    """tensors[key] ("stats.mean_image"), or the same name without its "stats." prefix, or None."""
    if key in tensors:
        return tensors[key]
    return tensors.get(key.removeprefix("stats."))


def compute_stats(
    images: _Images,
    progress: ProgressFn | None = None,
    stop: _StopFlag | None = None,
    batch_size: int = 64,
) -> DataStats:
    """Mean image and RGB covariance eigen-decomposition of `images` (an ImageSet), in one pass.

    `images.batches` must yield uint8 (B, H, W, 3) tensors, all of the same H and W.
    Raises ValueError for an empty set or malformed batches, StatsStopped when `stop` is set.
    """
    total = len(images)
    if total == 0:
        raise ValueError("cannot compute statistics of an empty training set")
    pixel_sum: Tensor | None = None  # (H, W, 3) int64, exact
    channel_sum = [0, 0, 0]  # Python ints: exact at any size
    outer_sum = [[0] * 3 for _ in range(3)]
    done = 0
    for batch, _labels in images.batches(np.arange(total), batch_size, workers=0):
        if stop is not None and stop.is_set():
            raise StatsStopped("statistics stopped before they were complete")
        if batch.dtype != torch.uint8 or batch.ndim != 4 or batch.shape[3] != 3:
            raise ValueError(f"expected uint8 batches (B, H, W, 3), got {batch.dtype} {tuple(batch.shape)}")
        batch = batch.cpu()
        if pixel_sum is None:
            pixel_sum = torch.zeros(batch.shape[1:], dtype=torch.int64)
        elif batch.shape[1:] != pixel_sum.shape:
            raise ValueError(f"images differ in size: {tuple(batch.shape[1:])} after {tuple(pixel_sum.shape)}")
        pixel_sum += batch.sum(dim=0, dtype=torch.int64)
        for start in range(0, batch.shape[0], _CHUNK_IMAGES):
            x = batch[start : start + _CHUNK_IMAGES].reshape(-1, 3).to(torch.float64)
            s1 = x.sum(dim=0)
            s2 = x.T @ x
            for i in range(3):
                channel_sum[i] += int(s1[i].item())
                for j in range(3):
                    outer_sum[i][j] += int(s2[i, j].item())
        done += batch.shape[0]
        if progress is not None:
            progress(done, total)
    if pixel_sum is None or done != total:
        raise ValueError(f"the image set yielded {done} images, expected {total}")
    n_pixels = done * pixel_sum.shape[0] * pixel_sum.shape[1]
    mean_image = (pixel_sum.to(torch.float64) / done).to(torch.float32).numpy()
    cov = np.array(
        [[(n_pixels * outer_sum[i][j] - channel_sum[i] * channel_sum[j]) / n_pixels**2 for j in range(3)] for i in range(3)],
        dtype=np.float64,
    )
    eigvals, eigvecs = pca_of_covariance(cov)
    return DataStats(mean_image, eigvals, eigvecs, n_images=done, n_pixels=n_pixels)


def pca_of_covariance(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending, clipped at 0) and eigenvectors (columns) of a 3x3 covariance.

    Each eigenvector's sign is fixed so its largest-magnitude component is positive, so the same
    data always gives the same vectors (the augmentation does not care: alpha is symmetric).
    """
    eigvals, eigvecs = np.linalg.eigh(cov)
    order = np.argsort(eigvals)[::-1]
    eigvals = np.clip(eigvals[order], 0.0, None)
    eigvecs = eigvecs[:, order]
    for i in range(3):
        if eigvecs[np.argmax(np.abs(eigvecs[:, i])), i] < 0:
            eigvecs[:, i] = -eigvecs[:, i]
    return eigvals, eigvecs
