"""Preprocess against manual numpy crops: centre, random crop + reflection, PCA noise, 10 crops, modes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from alexgui.engine.data.stats import DataStats
from alexgui.engine.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Preprocess

SIZE, CROP = 32, 24  # small stand-ins for 256 and 224: same code path, fast tests


def _stats(seed: int = 0) -> DataStats:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return DataStats(
        mean_image=rng.uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32),
        pca_eigvals=np.array([900.0, 100.0, 25.0]),
        pca_eigvecs=q,
    )


def _batch(n: int = 6, seed: int = 1) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8))


def _manual(u8: np.ndarray, mean: np.ndarray, top: int, left: int, flip: bool) -> np.ndarray:
    """crop(img) - crop(mean), reflected if asked, as (3, CROP, CROP)."""
    patch = u8[top : top + CROP, left : left + CROP].astype(np.float64) - mean[top : top + CROP, left : left + CROP]
    if flip:
        patch = patch[:, ::-1]
    return patch.transpose(2, 0, 1)


def test_center_batch_is_centre_crop_minus_mean_crop() -> None:
    stats, u8 = _stats(), _batch()
    out = Preprocess.from_stats(stats, crop=CROP).center_batch(u8)
    assert out.shape == (6, 3, CROP, CROP) and out.dtype == torch.float32 and out.is_contiguous()
    off = (SIZE - CROP) // 2
    for i in range(6):
        np.testing.assert_allclose(out[i].numpy(), _manual(u8[i].numpy(), stats.mean_image, off, off, False), atol=1e-4)


def test_train_batch_crops_and_flips_follow_drawn_parameters() -> None:
    stats, u8 = _stats(), _batch(16)
    pre = Preprocess.from_stats(stats, crop=CROP)
    out, params = pre.train_batch(u8, torch.Generator().manual_seed(5), pca_noise=0.0, return_params=True)
    flips = params.flip.tolist()
    assert any(flips) and not all(flips), "seed 5 should draw both reflected and plain crops"
    assert int(params.top.min()) >= 0 and int(params.top.max()) <= SIZE - CROP
    assert len(set(params.top.tolist())) > 1 and len(set(params.left.tolist())) > 1
    for i in range(16):
        expected = _manual(u8[i].numpy(), stats.mean_image, int(params.top[i]), int(params.left[i]), flips[i])
        np.testing.assert_allclose(out[i].numpy(), expected, atol=1e-4)


def test_no_random_crop_means_centre_crop_still_flipped() -> None:
    stats, u8 = _stats(), _batch(8)
    pre = Preprocess.from_stats(stats, crop=CROP)
    out, params = pre.train_batch(u8, torch.Generator().manual_seed(0), random_crop=False, pca_noise=0.0, return_params=True)
    off = (SIZE - CROP) // 2
    assert params.top.tolist() == [off] * 8 and params.left.tolist() == [off] * 8
    assert params.flip.any()
    for i in range(8):
        expected = _manual(u8[i].numpy(), stats.mean_image, off, off, bool(params.flip[i]))
        np.testing.assert_allclose(out[i].numpy(), expected, atol=1e-4)
    _, params = pre.train_batch(u8, torch.Generator().manual_seed(0), flip=False, return_params=True)
    assert not params.flip.any()


def test_pca_noise_is_one_rgb_offset_per_image() -> None:
    stats, u8 = _stats(), _batch(8)
    pre = Preprocess.from_stats(stats, crop=CROP)
    g = torch.Generator().manual_seed(3)
    out, params = pre.train_batch(u8, g, pca_noise=0.1, return_params=True)
    clean, clean_params = pre.train_batch(u8, torch.Generator().manual_seed(3), pca_noise=0.0, return_params=True)
    # Same draws whatever pca_noise is; alpha scales with it.
    assert torch.equal(params.top, clean_params.top) and torch.equal(params.flip, clean_params.flip)
    assert torch.count_nonzero(clean_params.alpha) == 0
    diff = (out - clean).numpy()  # (B, 3, c, c): constant over pixels
    np.testing.assert_allclose(diff, np.broadcast_to(diff[:, :, :1, :1], diff.shape), atol=1e-3)
    for i in range(8):
        # p_i * alpha_i * sqrt(lambda_i), summed (cuda-convnet2's scaling; see PCA_NOISE_SCALE).
        expected = stats.pca_eigvecs @ (params.alpha[i].numpy() * np.sqrt(stats.pca_eigvals))
        np.testing.assert_allclose(params.noise[i].numpy(), expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(diff[i, :, 0, 0], expected, atol=1e-3)
    assert 0.02 < float(params.alpha.std()) < 0.3  # alpha ~ N(0, 0.1)


def test_train_batch_is_deterministic_given_the_seed() -> None:
    pre, u8 = Preprocess.from_stats(_stats(), crop=CROP), _batch(5)
    a = pre.train_batch(u8, torch.Generator().manual_seed(11))
    b = pre.train_batch(u8, torch.Generator().manual_seed(11))
    c = pre.train_batch(u8, torch.Generator().manual_seed(12))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_ten_crops_order_and_values() -> None:
    stats, u8 = _stats(), _batch(3)
    out = Preprocess.from_stats(stats, crop=CROP).ten_crop_batch(u8)
    assert out.shape == (10, 3, 3, CROP, CROP)
    e, mid = SIZE - CROP, (SIZE - CROP) // 2
    positions = [(0, 0), (0, e), (e, 0), (e, e), (mid, mid)]
    for v in range(10):
        top, left = positions[v % 5]
        for i in range(3):
            expected = _manual(u8[i].numpy(), stats.mean_image, top, left, v >= 5)
            np.testing.assert_allclose(out[v, i].numpy(), expected, atol=1e-4)


def test_mean_std_mode_values_and_noise_scaling() -> None:
    u8 = _batch(4)
    pre = Preprocess.imagenet_mean_std(crop=CROP, resize=SIZE)
    out = pre.center_batch(u8).numpy()
    off = (SIZE - CROP) // 2
    x = u8.numpy()[:, off : off + CROP, off : off + CROP].astype(np.float64) / 255.0
    expected = ((x - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(out, expected, atol=1e-5)

    noisy, params = pre.train_batch(u8, torch.Generator().manual_seed(4), random_crop=False, flip=False, return_params=True)
    delta = (noisy.numpy() - out)[:, :, 0, 0]
    np.testing.assert_allclose(delta, params.noise.numpy() / 255.0 / np.array(IMAGENET_STD), atol=1e-5)
    # ImageNet's PCA (fb.resnet.torch): the noise is a few grey levels, not hundreds.
    assert 0.1 < float(params.noise.abs().max()) < 40


def test_describe_rebuild_round_trip() -> None:
    stats, u8 = _stats(), _batch(4)
    for pre, tensors in (
        (Preprocess.from_stats(stats, crop=CROP), stats.to_tensors()),
        (Preprocess.imagenet_mean_std(crop=CROP, resize=SIZE), {}),
        (Preprocess.imagenet_mean_std(crop=CROP, resize=SIZE, stats=stats), stats.to_tensors()),
    ):
        desc = json.loads(json.dumps(pre.describe()))
        assert desc["channel_order"] == "RGB" and desc["crop"] == CROP and desc["resize"] == SIZE
        back = Preprocess.from_description(desc, tensors)
        assert back.describe() == desc
        unprefixed = {k.removeprefix("stats."): v for k, v in tensors.items()}  # as checkpoint.split_prefix gives
        rebuilt = Preprocess.from_description(desc, unprefixed)
        assert torch.equal(rebuilt.mean, pre.mean) and torch.equal(rebuilt.pca_eigvecs, pre.pca_eigvecs)
        assert torch.equal(back.center_batch(u8), pre.center_batch(u8))
        g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
        assert torch.equal(back.train_batch(u8, g1), pre.train_batch(u8, g2))
    mean_std = Preprocess.imagenet_mean_std().describe()
    assert mean_std["mean"] == list(IMAGENET_MEAN) and mean_std["std"] == list(IMAGENET_STD)
    assert mean_std["value_range"] == [0, 1]
    with pytest.raises(ValueError, match="stats.mean_image"):
        Preprocess.from_description(Preprocess.from_stats(stats, crop=CROP).describe(), {})
    with pytest.raises(ValueError, match="mode"):
        Preprocess.from_description({"mode": "nonsense", "crop": 224, "resize": 256}, {})


def test_a_square_image_of_another_size_is_resampled_to_the_models() -> None:
    pre = Preprocess.from_stats(_stats(), crop=CROP)
    big = torch.full((2, 2 * SIZE, 2 * SIZE, 3), 77, dtype=torch.uint8)
    assert pre.at_input_size(big).shape == (2, SIZE, SIZE, 3)
    assert torch.equal(pre.center_batch(big), pre.center_batch(torch.full((2, SIZE, SIZE, 3), 77, dtype=torch.uint8)))
    same = _batch(2)
    assert pre.at_input_size(same) is same  # the model's own size: untouched


def test_bad_input_is_named() -> None:
    pre = Preprocess.from_stats(_stats(), crop=CROP)
    with pytest.raises(ValueError, match="uint8"):
        pre.center_batch(_batch(2).float())
    with pytest.raises(ValueError, match="mean image"):
        pre.center_batch(torch.zeros(1, SIZE + 2, SIZE + 4, 3, dtype=torch.uint8))  # not square: not resampled
    with pytest.raises(ValueError, match="smaller than"):
        Preprocess.imagenet_mean_std(crop=CROP, resize=SIZE).center_batch(torch.zeros(1, 8, 9, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="to\\(device\\)"):
        pre.center_batch(torch.zeros(1, SIZE, SIZE, 3, dtype=torch.uint8, device="meta"))
    with pytest.raises(ValueError, match="pca_noise"):
        pre.train_batch(_batch(2), torch.Generator(), pca_noise=-1.0)


def test_single_image_path_and_device_move() -> None:
    stats, u8 = _stats(), _batch(1)
    pre = Preprocess.from_stats(stats, crop=CROP).to("cpu")
    assert {name for name, _ in pre.named_buffers()} >= {"mean", "pca_eigvals", "pca_eigvecs"}
    one = pre.preprocess_image_u8(u8[0].numpy())
    assert torch.equal(one, pre.center_batch(u8))
    with pytest.raises(ValueError, match="uint8"):
        pre.preprocess_image_u8(np.zeros((SIZE, SIZE), np.uint8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    stats, u8 = _stats(), _batch(8)
    cpu = Preprocess.from_stats(stats, crop=CROP)
    gpu = Preprocess.from_stats(stats, crop=CROP).to("cuda")
    a = cpu.train_batch(u8, torch.Generator().manual_seed(2))
    b = gpu.train_batch(u8.cuda(), torch.Generator().manual_seed(2))
    torch.testing.assert_close(b.cpu(), a, atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(gpu.ten_crop_batch(u8.cuda()).cpu(), cpu.ten_crop_batch(u8))
    with pytest.raises(ValueError, match="CPU"):
        gpu.train_batch(u8.cuda(), torch.Generator(device="cuda"))
    with pytest.raises(ValueError, match="to\\(device\\)"):
        cpu.center_batch(u8.cuda())
