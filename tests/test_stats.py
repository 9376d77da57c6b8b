"""compute_stats against a direct numpy computation, and the checkpoint tensor round trip."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from alexgui.engine.data.stats import (
    DataStats,
    StatsStopped,
    compute_stats,
    pca_of_covariance,
)


class FakeImages:
    """The ImageSet interface compute_stats uses: len() and batches() of uint8 (B, H, W, 3)."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images
        self.labels = np.zeros(len(images), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, indices: np.ndarray, batch_size: int, workers: int = 0):
        for start in range(0, len(indices), batch_size):
            idx = indices[start : start + batch_size]
            yield torch.from_numpy(self.images[idx]), torch.from_numpy(self.labels[idx])


def _random_images(n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Correlated channels, so the covariance has a clear principal axis (like real photos).
    base = rng.integers(0, 200, (n, size, size, 1))
    return np.clip(base + rng.integers(0, 56, (n, size, size, 3)) * np.array([1, 0.5, 0.2]), 0, 255).astype(np.uint8)


def test_matches_direct_numpy_computation() -> None:
    images = _random_images(13, 16, seed=1)
    seen: list[tuple[int, int]] = []
    stats = compute_stats(FakeImages(images), progress=lambda d, t: seen.append((d, t)), batch_size=4)

    np.testing.assert_allclose(stats.mean_image, images.astype(np.float64).mean(axis=0), rtol=0, atol=1e-4)
    pixels = images.reshape(-1, 3).astype(np.float64)
    cov = np.cov(pixels, rowvar=False, bias=True)
    vals, vecs = np.linalg.eigh(cov)
    np.testing.assert_allclose(stats.pca_eigvals, vals[::-1], rtol=1e-5)
    for i in range(3):  # eigenvectors are defined up to sign
        expected = vecs[:, 2 - i]
        assert abs(abs(float(stats.pca_eigvecs[:, i] @ expected)) - 1) < 1e-5
    assert np.all(np.diff(stats.pca_eigvals) <= 0)
    # Columns are eigenvectors: cov @ v_i == lambda_i v_i.
    for i in range(3):
        np.testing.assert_allclose(cov @ stats.pca_eigvecs[:, i], stats.pca_eigvals[i] * stats.pca_eigvecs[:, i], atol=1e-2)
    assert stats.n_images == 13 and stats.n_pixels == 13 * 16 * 16
    assert stats.mean_image.dtype == np.float32 and stats.mean_image.shape == (16, 16, 3)
    assert seen == [(4, 13), (8, 13), (12, 13), (13, 13)]


def test_covariance_is_exact_for_large_offsets() -> None:
    # Values near 255 with a tiny spread: the naive float32 two-moment formula would lose the variance.
    rng = np.random.default_rng(2)
    images = (250 + rng.integers(0, 2, (6, 8, 8, 3))).astype(np.uint8)
    stats = compute_stats(FakeImages(images), batch_size=4)
    cov = np.cov(images.reshape(-1, 3).astype(np.float64), rowvar=False, bias=True)
    np.testing.assert_allclose(stats.pca_eigvals, np.linalg.eigvalsh(cov)[::-1], rtol=1e-6, atol=1e-9)


def test_empty_set_and_stop_are_reported() -> None:
    with pytest.raises(ValueError, match="empty"):
        compute_stats(FakeImages(np.zeros((0, 8, 8, 3), np.uint8)))
    stop = threading.Event()
    stop.set()
    with pytest.raises(StatsStopped):
        compute_stats(FakeImages(_random_images(3, 8, seed=0)), stop=stop)


def test_tensor_round_trip_and_validation() -> None:
    stats = compute_stats(FakeImages(_random_images(5, 8, seed=3)))
    tensors = stats.to_tensors()
    assert set(tensors) == {"stats.mean_image", "stats.pca_eigvals", "stats.pca_eigvecs"}
    back = DataStats.from_tensors(tensors)
    np.testing.assert_array_equal(back.mean_image, stats.mean_image)
    np.testing.assert_array_equal(back.pca_eigvals, stats.pca_eigvals)
    np.testing.assert_array_equal(back.pca_eigvecs, stats.pca_eigvecs)
    with pytest.raises(ValueError, match="stats.pca_eigvecs"):
        DataStats.from_tensors({k: v for k, v in tensors.items() if k != "stats.pca_eigvecs"})
    bad = dict(tensors, **{"stats.pca_eigvals": torch.ones(4)})
    with pytest.raises(ValueError, match="pca_eigvals"):
        DataStats.from_tensors(bad)


def test_pca_sign_convention_is_deterministic() -> None:
    cov = np.array([[4.0, 2.0, 0.5], [2.0, 3.0, 0.2], [0.5, 0.2, 1.0]])
    vals, vecs = pca_of_covariance(cov)
    _, vecs_neg = pca_of_covariance(cov.copy())
    np.testing.assert_array_equal(vecs, vecs_neg)
    for i in range(3):
        assert vecs[np.argmax(np.abs(vecs[:, i])), i] > 0
    np.testing.assert_allclose(vecs @ np.diag(vals) @ vecs.T, cov, atol=1e-12)
