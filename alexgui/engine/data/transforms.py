"""The paper's preprocessing on torch tensors: crops, reflections, mean subtraction, PCA colour noise.

Input is what the loader yields: uint8 (B, H, W, 3) RGB, H = W = 256 (short side resized to 256, then
the central 256x256 patch, paper section 2). Output is float32 (B, 3, crop, crop), contiguous NCHW.

Two modes:
- "mean_image" (the paper): x on the 0..255 scale minus the training set's mean image. The mean
  image is cropped and reflected together with the image, i.e. the output is crop(img - mean).
- "mean_std" (torchvision's ImageNet weights): x / 255, then (x - mean) / std per channel.

Both are written as (x - m) * s + noise * s with a per-pixel or per-channel m and a per-channel s, so
one vectorised code path serves every mode: a single gather builds all crops and reflections of a
batch at once (no Python loop over images), on whatever device the batch and this module are on.

Randomness comes only from the caller's CPU torch.Generator, drawn in a fixed order whatever the
flags, so a run resumed at step n augments exactly as an uninterrupted one would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

import numpy as np
import torch
from torch import Tensor, nn

from alexgui.engine.data.stats import DataStats, find_stat_tensor

Mode = Literal["mean_image", "mean_std"]
MODES: tuple[str, ...] = ("mean_image", "mean_std")

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet weights expect these (on 0..1)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The paper adds p_i * alpha_i * lambda_i with lambda_i "the eigenvalue". Krizhevsky's own code
# (cuda-convnet2 convdata.py, ColorNoiseMakerThread) multiplies alpha_i by the SQUARE ROOT of the
# eigenvalue (its "pca_stdevs"), which keeps the noise in pixel units: a literal eigenvalue of
# 0..255 pixels (thousands) would shift colours by hundreds of levels. We follow the code.
PCA_NOISE_SCALE = "sqrt_eigval"

# ImageNet colour PCA for mean_std mode when no dataset statistics are given: the widely used values
# of fb.resnet.torch (Lighting transform), standard deviations on the 0..1 scale, eigenvectors as
# columns. Stored here as our eigenvalues: variances on the 0..255 scale.
IMAGENET_PCA_STDDEV_01 = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVECS = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


@dataclass
class AugmentParams:
    """What train_batch drew for each image (CPU tensors), for tests and for showing augmentations."""

    top: Tensor  # (B,) int64 crop row offset in [0, H - crop]
    left: Tensor  # (B,) int64 crop column offset in [0, W - crop]
    flip: Tensor  # (B,) bool horizontal reflection
    alpha: Tensor  # (B, 3) float32, alpha_i ~ N(0, pca_noise) (pca_noise is the standard deviation)
    noise: Tensor  # (B, 3) float32 RGB offset added to every pixel, 0..255 scale (before the mode's scaling)


class Preprocess(nn.Module):
    """Turns uint8 (B, H, W, 3) batches into the network's float32 (B, 3, crop, crop) input."""

    # Buffers registered in __init__ (typed here: nn.Module's __getattr__ says Tensor | Module).
    mean: Tensor
    scale: Tensor
    pca_eigvals: Tensor
    pca_eigvecs: Tensor

    def __init__(
        self,
        mode: Mode,
        mean: Tensor,
        scale: Tensor,
        pca_eigvals: Tensor,
        pca_eigvecs: Tensor,
        crop: int = 224,
        resize: int = 256,
        pca_source: str = "dataset",
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown preprocessing mode {mode!r}; expected one of {', '.join(MODES)}")
        if not isinstance(crop, int) or not isinstance(resize, int) or not 0 < crop <= resize:
            raise ValueError(f"crop must be an integer in 1..resize, got crop={crop!r} resize={resize!r}")
        if mean.ndim != 3 or mean.shape[2] != 3:
            raise ValueError(f"mean must be (H, W, 3) or (1, 1, 3), got {tuple(mean.shape)}")
        self.per_pixel_mean = tuple(mean.shape[:2]) != (1, 1)
        if self.per_pixel_mean and tuple(mean.shape[:2]) != (resize, resize):
            raise ValueError(f"mean image is {tuple(mean.shape[:2])}, expected ({resize}, {resize})")
        self.mode: Mode = mode
        self.crop = crop
        self.resize = resize
        self.pca_source = pca_source
        # mean_std mode: the per-channel mean and std on the 0..1 scale, exactly as given (for describe()).
        self.channel_mean_std: tuple[tuple[float, ...], tuple[float, ...]] = ((), ())
        # Buffers, so .to(device) moves them; float32 throughout.
        self.register_buffer("mean", mean.detach().to(torch.float32).clone())
        self.register_buffer("scale", scale.detach().to(torch.float32).reshape(3).clone())
        self.register_buffer("pca_eigvals", pca_eigvals.detach().to(torch.float32).reshape(3).clone())
        self.register_buffer("pca_eigvecs", pca_eigvecs.detach().to(torch.float32).reshape(3, 3).clone())

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_stats(cls, stats: DataStats, crop: int = 224) -> Preprocess:
        """The paper: 0..255 values minus the training set's mean image; PCA noise from the same set."""
        h, w, _ = stats.mean_image.shape
        if h != w:
            raise ValueError(f"mean image must be square, got {h}x{w}")
        return cls(
            "mean_image",
            mean=torch.from_numpy(stats.mean_image.copy()),
            scale=torch.ones(3),
            pca_eigvals=torch.from_numpy(stats.pca_eigvals.copy()),
            pca_eigvecs=torch.from_numpy(stats.pca_eigvecs.copy()),
            crop=crop,
            resize=h,
        )

    @classmethod
    def imagenet_mean_std(
        cls,
        crop: int = 224,
        stats: DataStats | None = None,
        resize: int = 256,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
    ) -> Preprocess:
        """torchvision's normalisation ((x/255 - mean) / std); PCA noise from `stats` or ImageNet's."""
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise ValueError(f"mean and std need 3 values each, std positive; got mean={mean} std={std}")
        if stats is not None:
            eigvals = torch.from_numpy(stats.pca_eigvals.copy())
            eigvecs = torch.from_numpy(stats.pca_eigvecs.copy())
            source = "dataset"
        else:
            eigvals = (torch.tensor(IMAGENET_PCA_STDDEV_01, dtype=torch.float64) * 255.0) ** 2
            eigvecs = torch.tensor(IMAGENET_PCA_EIGVECS, dtype=torch.float64)
            source = "imagenet"
        # In 0..255 units: (x/255 - m) / s == (x - 255 m) * (1 / (255 s)).
        pre = cls(
            "mean_std",
            mean=torch.tensor(mean, dtype=torch.float64).mul(255.0).reshape(1, 1, 3),
            scale=1.0 / (255.0 * torch.tensor(std, dtype=torch.float64)),
            pca_eigvals=eigvals,
            pca_eigvecs=eigvecs,
            crop=crop,
            resize=resize,
            pca_source=source,
        )
        pre.channel_mean_std = (tuple(float(v) for v in mean), tuple(float(v) for v in std))
        return pre

    def describe(self) -> dict[str, Any]:
        """JSON-able description kept in checkpoints and ONNX metadata; from_description rebuilds it."""
        d: dict[str, Any] = {
            "mode": self.mode,
            "resize": self.resize,  # short side to this, then the central resize x resize patch
            "crop": self.crop,
            "channel_order": "RGB",
            "layout": "NCHW",
            "pca_noise_scale": PCA_NOISE_SCALE,
            "pca_source": self.pca_source,
        }
        if self.mode == "mean_image":
            d["value_range"] = [0, 255]
            d["normalize"] = "x - mean_image (tensor stats.mean_image, cropped with the image)"
        else:
            d["value_range"] = [0, 1]
            d["normalize"] = "(x - mean) / std"
            d["mean"] = list(self.channel_mean_std[0])
            d["std"] = list(self.channel_mean_std[1])
        return d

    def stat_tensors(self) -> dict[str, Tensor]:
        """The training-set statistics from_description needs back, named as in checkpoints (stats.*)."""
        tensors = {}
        if self.mode == "mean_image":
            tensors["stats.mean_image"] = self.mean
        if self.mode == "mean_image" or self.pca_source == "dataset":
            tensors["stats.pca_eigvals"] = self.pca_eigvals
            tensors["stats.pca_eigvecs"] = self.pca_eigvecs
        return tensors

    @classmethod
    def from_description(cls, desc: dict[str, Any], tensors: dict[str, Tensor] | None = None) -> Preprocess:
        """Rebuild from describe()'s output plus the checkpoint's `stats.*` tensors where the mode needs them.

        Raises ValueError naming the field or tensor that is missing or wrong.
        """
        tensors = tensors or {}
        if not isinstance(desc, dict):
            raise ValueError("preprocessing description: expected a JSON object")
        mode = desc.get("mode")
        if mode not in MODES:
            raise ValueError(f"preprocessing description: unknown mode {mode!r}")
        crop, resize = _integer_field(desc, "crop"), _integer_field(desc, "resize")
        if desc.get("pca_noise_scale", PCA_NOISE_SCALE) != PCA_NOISE_SCALE:
            raise ValueError(f"preprocessing description: unsupported pca_noise_scale {desc['pca_noise_scale']!r}")
        if mode == "mean_image":
            stats = DataStats.from_tensors(tensors)
            if stats.mean_image.shape[:2] != (resize, resize):
                raise ValueError(
                    f"preprocessing description: resize {resize} but stats.mean_image is {stats.mean_image.shape[:2]}"
                )
            return cls.from_stats(stats, crop=crop)
        mean, std = _three_numbers_field(desc, "mean"), _three_numbers_field(desc, "std")
        source = desc.get("pca_source", "imagenet")
        if source == "dataset":
            pre = cls.imagenet_mean_std(crop, resize=resize, mean=mean, std=std)
            for key, buffer in (("stats.pca_eigvals", pre.pca_eigvals), ("stats.pca_eigvecs", pre.pca_eigvecs)):
                found = find_stat_tensor(tensors, key)
                if found is None:
                    raise ValueError(f"preprocessing description: PCA from the dataset but tensor {key} is missing")
                value = found.detach().to("cpu", torch.float32)
                if value.shape != buffer.shape:
                    raise ValueError(f"{key}: expected shape {tuple(buffer.shape)}, got {tuple(value.shape)}")
                buffer.copy_(value)
            pre.pca_source = "dataset"
            return pre
        if source != "imagenet":
            raise ValueError(f"preprocessing description: unknown pca_source {source!r}")
        return cls.imagenet_mean_std(crop, resize=resize, mean=mean, std=std)

    # ---- the batches --------------------------------------------------------------------------

    @overload
    def train_batch(
        self,
        u8: Tensor,
        generator: torch.Generator,
        random_crop: bool = ...,
        flip: bool = ...,
        pca_noise: float = ...,
        return_params: Literal[False] = ...,
    ) -> Tensor: ...

    @overload
    def train_batch(
        self,
        u8: Tensor,
        generator: torch.Generator,
        random_crop: bool = ...,
        flip: bool = ...,
        pca_noise: float = ...,
        *,
        return_params: Literal[True],
    ) -> tuple[Tensor, AugmentParams]: ...

    def train_batch(
        self,
        u8: Tensor,
        generator: torch.Generator,
        random_crop: bool = True,
        flip: bool = True,
        pca_noise: float = 0.1,
        return_params: bool = False,
    ) -> Tensor | tuple[Tensor, AugmentParams]:
        """Training augmentation (paper section 4.1): random crop, random reflection, PCA colour noise.

        Offsets, reflections and alpha are drawn from `generator` (a CPU generator) in a fixed order
        whatever the flags. random_crop=False uses the centre crop; pca_noise is the standard
        deviation of alpha_i (0 turns the noise off).
        """
        self._check(u8)
        if generator.device.type != "cpu":
            raise ValueError(f"train_batch needs a CPU torch.Generator, got one on {generator.device}")
        if pca_noise < 0 or not math.isfinite(pca_noise):
            raise ValueError(f"pca_noise must be a finite number >= 0, got {pca_noise}")
        b, h, w, _ = u8.shape
        c = self.crop
        top = torch.randint(0, h - c + 1, (b,), generator=generator)
        left = torch.randint(0, w - c + 1, (b,), generator=generator)
        flips = torch.randint(0, 2, (b,), generator=generator).bool()
        alpha = torch.randn(b, 3, generator=generator) * pca_noise
        if not random_crop:
            top.fill_((h - c) // 2)
            left.fill_((w - c) // 2)
        if not flip:
            flips.zero_()
        dev = u8.device
        # Column i of eigvecs times alpha_i * sqrt(lambda_i), summed: one RGB offset per image.
        noise = (alpha.to(dev) * self.pca_eigvals.clamp(min=0).sqrt()) @ self.pca_eigvecs.T
        out = self._crops(u8, top.to(dev), left.to(dev), flips.to(dev), noise)
        if return_params:
            return out, AugmentParams(top=top, left=left, flip=flips, alpha=alpha, noise=noise.cpu())
        return out

    def center_batch(self, u8: Tensor) -> Tensor:
        """The central crop x crop patch of each image, no augmentation (validation, inference)."""
        u8 = self.at_input_size(u8)
        self._check(u8)
        b, h, w, _ = u8.shape
        dev = u8.device
        top = torch.full((b,), (h - self.crop) // 2, device=dev)
        left = torch.full((b,), (w - self.crop) // 2, device=dev)
        return self._crops(u8, top, left, torch.zeros(b, dtype=torch.bool, device=dev))

    def ten_crop_batch(self, u8: Tensor) -> Tensor:
        """(10, B, 3, crop, crop): top-left, top-right, bottom-left, bottom-right, centre, then the
        same five reflected (paper section 4.1, test time: average the softmax over the ten)."""
        u8 = self.at_input_size(u8)
        self._check(u8)
        b, h, w, _ = u8.shape
        c, dev = self.crop, u8.device
        tops = [0, 0, h - c, h - c, (h - c) // 2]
        lefts = [0, w - c, 0, w - c, (w - c) // 2]
        crops = []
        for flipped in (False, True):
            for y, x in zip(tops, lefts):
                top = torch.full((b,), y, device=dev)
                left = torch.full((b,), x, device=dev)
                crops.append(self._crops(u8, top, left, torch.full((b,), flipped, device=dev)))
        return torch.stack(crops)

    def test_batch(self, u8: Tensor, ten_crop: bool) -> tuple[Tensor, int]:
        """The network's test-time input and the number of crops per image: the centre crop (B, 3, c, c)
        and 1, or the ten crops stacked crop-major (10*B, 3, c, c) and 10. Whatever comes out of the
        network for it goes through mean_over_crops, so every caller averages the same way."""
        if not ten_crop:
            return self.center_batch(u8), 1
        crops = self.ten_crop_batch(u8)
        return crops.flatten(0, 1), crops.shape[0]

    def preprocess_image_u8(self, u8_hwc: np.ndarray) -> Tensor:
        """One decoded image (H, W, 3) uint8, as load_256 returns it -> (1, 3, crop, crop) centre crop,
        on this module's device."""
        if not isinstance(u8_hwc, np.ndarray) or u8_hwc.dtype != np.uint8 or u8_hwc.ndim != 3 or u8_hwc.shape[2] != 3:
            shape = getattr(u8_hwc, "shape", None)
            raise ValueError(f"expected a uint8 (H, W, 3) array, got {type(u8_hwc).__name__} {shape}")
        u8 = torch.from_numpy(np.ascontiguousarray(u8_hwc)).to(self.mean.device)
        return self.center_batch(u8.unsqueeze(0))

    def at_input_size(self, u8: Tensor) -> Tensor:
        """Square images of another side (a 256 image for a model trained at --resize 128) resampled
        to resize x resize, antialiased, so the crop sees the geometry training saw; the others as they are."""
        if not isinstance(u8, Tensor) or u8.ndim != 4 or u8.shape[1] != u8.shape[2] or u8.shape[1] == self.resize:
            return u8
        x = torch.nn.functional.interpolate(u8.permute(0, 3, 1, 2).float(), size=(self.resize, self.resize),
                                            mode="bilinear", antialias=True, align_corners=False)
        return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()

    # ---- implementation -----------------------------------------------------------------------

    def _check(self, u8: Tensor) -> None:
        if not isinstance(u8, Tensor) or u8.dtype != torch.uint8 or u8.ndim != 4 or u8.shape[3] != 3:
            desc = f"{u8.dtype} {tuple(u8.shape)}" if isinstance(u8, Tensor) else type(u8).__name__
            raise ValueError(f"expected a uint8 (B, H, W, 3) tensor, got {desc}")
        h, w = u8.shape[1], u8.shape[2]
        if self.per_pixel_mean and (h, w) != tuple(self.mean.shape[:2]):
            raise ValueError(f"images are {h}x{w} but the mean image is {self.mean.shape[0]}x{self.mean.shape[1]}")
        if h < self.crop or w < self.crop:
            raise ValueError(f"images are {h}x{w}, smaller than the {self.crop}x{self.crop} crop")
        if u8.device != self.mean.device:
            raise ValueError(f"batch is on {u8.device} but the preprocessing is on {self.mean.device}; call .to(device)")

    def _crops(self, u8: Tensor, top: Tensor, left: Tensor, flips: Tensor, noise: Tensor | None = None) -> Tensor:
        """Patch k of image k at (top[k], left[k]), reflected where flips[k]; minus the same patch of
        the mean, plus noise[k] (RGB, 0..255 units), times the per-channel scale."""
        b, h, w, _ = u8.shape
        c = self.crop
        ar = torch.arange(c, device=u8.device)
        rows = top[:, None, None] + ar[None, :, None]  # (b, c, 1)
        # A reflected crop reads its columns right to left: cropping and flipping in one gather.
        cols = left[:, None, None] + torch.where(flips[:, None], c - 1 - ar, ar)[:, None, :]  # (b, 1, c)
        # Gather on channel planes with one (b, 1, c*c) pixel index shared by the three channels:
        # measured 2-4x faster on CPU than fancy indexing with three broadcast index tensors.
        pix = (rows * w + cols).reshape(b, 1, c * c).expand(b, 3, c * c)
        planes = u8.permute(0, 3, 1, 2).reshape(b, 3, h * w)
        x = torch.gather(planes, 2, pix).to(torch.float32)
        if self.per_pixel_mean:
            mean_planes = self.mean.permute(2, 0, 1).reshape(1, 3, h * w).expand(b, 3, h * w)
            x.sub_(torch.gather(mean_planes, 2, pix))
        else:
            x.sub_(self.mean.reshape(1, 3, 1))
        if noise is not None:
            x.add_(noise[:, :, None])
        x.mul_(self.scale.reshape(1, 3, 1))
        return x.reshape(b, 3, c, c)


def _integer_field(desc: dict[str, Any], name: str) -> int:
    value = desc.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"preprocessing description: {name} must be an integer, got {value!r}")
    return value


def _three_numbers_field(desc: dict[str, Any], name: str) -> tuple[float, float, float]:
    value = desc.get(name)
    if not isinstance(value, list) or len(value) != 3 or not all(isinstance(v, (int, float)) for v in value):
        raise ValueError(f"preprocessing description: {name} must be a list of 3 numbers, got {value!r}")
    return (value[0], value[1], value[2])


ArrayT = TypeVar("ArrayT", Tensor, np.ndarray)


def mean_over_crops(values: ArrayT, crops: int) -> ArrayT:
    """(crops*B, ...) rows of a test_batch's outputs (softmax probabilities, features) -> (B, ...), the
    mean over each image's crops: the paper averages the softmax over its ten patches."""
    if crops == 1:
        return values
    # The image count spelled out, not -1: a (crops*B, 0) array (an ONNX model without features) has
    # no size to infer it from.
    return values.reshape(crops, values.shape[0] // crops, *values.shape[1:]).mean(0)
