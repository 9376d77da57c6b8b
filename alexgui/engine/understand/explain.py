"""Why the network decided: Grad-CAM, occlusion sensitivity, guided backpropagation and gradient saliency
over the 224x224 centre crop the model sees, for any class of a PyTorch model of either architecture.

    explain(predictor, u8, "gradcam", class_index=None)  -> Explanation (map: (224, 224) float32 in 0..1)

- "gradcam" (Selvaraju et al. 2017): conv5's rectified maps weighted by the spatial mean of the class
  logit's gradient, summed over every conv5 channel, rectified, bilinearly upsampled. For the paper's
  two towers that is both towers' 128 maps each: the whole conv5, from one backward pass.
- "occlusion" (Zeiler and Fergus 2014, run on AlexNet): a patch of the mean image (0 after the model's
  normalisation, whichever it is) slid over the crop; each pixel's value is the drop of the class
  probability with the patch centred there, negative drops (occluding helped) counted as none. Batched.
- "guided-backprop" (Springenberg et al. 2015): the logit's gradient at the input with every ReLU passing
  back only positive gradients; the map is the largest absolute channel value per pixel.
- "saliency" (Simonyan et al. 2014): the plain gradient's largest absolute channel value per pixel.

Written here rather than through Captum (which does the same in general): the paper's conv5 is two
modules' outputs, which one LayerGradCam covers only with two backward passes; Captum's occlusion has
neither a progress callback nor cancellation, which the app needs for the longest method; and guided
backpropagation swaps our ReLU modules for a guided one, not hooks on the towers' shared in-place ReLU.
tests/test_explain.py checks these maps against Captum's on the same model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alexgui.engine.inference.predict import Predictor, TorchPredictor
from alexgui.engine.model.base import AlexNetBase
from alexgui.errors import AlexguiError

METHODS = ("gradcam", "occlusion", "guided-backprop", "saliency")
METHOD_TITLES = {
    "gradcam": "Grad-CAM (conv5)",
    "occlusion": "Occlusion",
    "guided-backprop": "Guided backpropagation",
    "saliency": "Gradient saliency",
}
GRADCAM_LAYER = "conv5"
DEFAULT_PATCH = 32
DEFAULT_STRIDE = 16
DEFAULT_BATCH = 32  # occluded copies per forward pass: ~100 MB of activations for the paper net

PEAK_TIE = 0.01  # values this close (relatively) to the largest count as the largest for `peak`

Progress = Callable[[int, int], None]


class ExplainError(AlexguiError):
    """A model, class or setting an explanation cannot be made with; the message says which and why."""


class Cancelled(Exception):
    """The stop event was set while an explanation was being computed."""


@dataclass
class Explanation:
    """One map over the centre crop the model saw."""

    method: str
    class_index: int
    class_name: str
    prob: float  # the class's softmax probability on the centre crop
    map: np.ndarray  # (crop, crop) float32 in 0..1, in the crop's coordinates
    crop: np.ndarray  # (crop, crop, 3) uint8: the pixels the map covers
    raw_max: float  # the largest value before normalisation (occlusion: the largest probability drop)

    @property
    def peak(self) -> tuple[int, int]:
        """(row, col) of the map's largest value. Where many pixels share it (within PEAK_TIE of it: an
        occlusion map of a confident model, where every patch that hides the object drops the
        probability to 0), the one of them nearest their centroid rather than the first in reading order."""
        top = float(self.map.max())
        rows, cols = np.nonzero(self.map >= top - PEAK_TIE * max(top, 1e-12))
        nearest = int(np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2))
        return int(rows[nearest]), int(cols[nearest])


def torch_predictor(predictor: Predictor) -> TorchPredictor:
    """The predictor itself when it runs PyTorch; ExplainError otherwise (gradients need the torch model)."""
    if not isinstance(predictor, TorchPredictor):
        raise ExplainError(
            f"{predictor.source}: explanations need the PyTorch model (gradients, and occlusion on the same "
            "network); open the checkpoint or run folder this model was exported from")
    return predictor


def resolve_class(predictor: Predictor, name_or_index: str) -> int:
    """A class given by its index or its name (case, spaces and underscores loose; an ImageNet wnid too)."""
    from alexgui.engine.data.labels import class_of_folder

    text = name_or_index.strip()
    names = predictor.class_names
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(names):
            raise ExplainError(f"class index {index} is out of range: the model has {len(names)} classes (0..{len(names) - 1})")
        return index
    found = class_of_folder(text, names, predictor.wnids)
    if found is None:
        shown = ", ".join(names[:8]) + (f", … ({len(names)} in all)" if len(names) > 8 else "")
        raise ExplainError(f"no class named {text!r} in the model; its classes: {shown}")
    return found


def explain(
    predictor: Predictor,
    u8: np.ndarray,
    method: str,
    class_index: int | None = None,
    *,
    patch: int = DEFAULT_PATCH,
    stride: int = DEFAULT_STRIDE,
    batch_size: int = DEFAULT_BATCH,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> Explanation:
    """The `method`'s map of one decoded (256, 256, 3) uint8 image for `class_index` (default: the top
    class). Raises ExplainError for a model or setting that cannot be used, Cancelled when `stop` is set."""
    if method not in METHODS:
        raise ExplainError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    tp = torch_predictor(predictor)
    if not u8.flags.writeable:  # a decoded PIL image is read-only, and torch.from_numpy warns on it
        u8 = u8.copy()
    model, pre = tp.model, tp.preprocess
    crop_size = pre.crop
    if method == "occlusion" and not (1 <= patch <= crop_size and 1 <= stride <= crop_size):
        raise ExplainError(f"occlusion patch and stride must be 1..{crop_size} pixels, got patch {patch}, stride {stride}")
    if u8.ndim == 3 and u8.shape[0] == u8.shape[1] != pre.resize:  # a 256 image for a model trained at another --resize
        u8 = pre.at_input_size(torch.from_numpy(np.ascontiguousarray(u8))[None])[0].numpy()
    with tp.lock:
        x = pre.preprocess_image_u8(u8)
        with torch.inference_mode():
            probs = torch.softmax(model(x).float(), dim=1)[0]
        c = int(torch.argmax(probs)) if class_index is None else int(class_index)
        if not 0 <= c < probs.shape[0]:
            raise ExplainError(f"class index {c} is out of range: the model has {probs.shape[0]} classes")
        if method == "gradcam":
            raw = gradcam(model, x, c)
        elif method == "occlusion":
            raw = occlusion(model, x, c, patch, stride, batch_size, float(probs[c]), stop, progress)
        else:
            raw = input_gradient(model, x, c, guided=method == "guided-backprop")
    crop = _centre_crop(u8, crop_size)
    peak_value = float(raw.max())
    normalised = raw / peak_value if peak_value > 0 else np.zeros_like(raw)
    return Explanation(method, c, tp.class_names[c], float(probs[c]), normalised.astype(np.float32), crop, peak_value)


def _centre_crop(u8: np.ndarray, size: int) -> np.ndarray:
    h, w = u8.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(u8[top : top + size, left : left + size])


# ---- the methods (model in eval mode, x the (1, 3, crop, crop) normalised input) ----------------------


def gradcam(model: AlexNetBase, x: Tensor, class_index: int) -> np.ndarray:
    """ReLU(sum over conv5's channels of mean-gradient x map), upsampled to x's size; >= 0, not normalised."""
    with torch.enable_grad():
        logits, maps = model.logits_and_towers(x, GRADCAM_LAYER)
        grads = torch.autograd.grad(logits[0, class_index], maps)
    with torch.no_grad():
        cam = sum((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1) for g, a in zip(grads, maps))
        assert isinstance(cam, Tensor)
        cam = F.interpolate(cam.relu().unsqueeze(1).float(), size=x.shape[2:], mode="bilinear", align_corners=False)
    return cam[0, 0].clamp(min=0).cpu().numpy()


def input_gradient(model: AlexNetBase, x: Tensor, class_index: int, guided: bool) -> np.ndarray:
    """|d logit / d input|, the largest over the colour channels; guided: through guided ReLUs."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad(), _guided_relus(model) if guided else _nothing():
        logit = model(x)[0, class_index]
        (grad,) = torch.autograd.grad(logit, [x])
    return grad[0].abs().amax(dim=0).float().cpu().numpy()


def occlusion_positions(size: int, patch: int, stride: int) -> list[int]:
    """Patch offsets along one side: every `stride` pixels, and the last flush with the edge."""
    last = size - patch
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


def occlusion(
    model: AlexNetBase,
    x: Tensor,
    class_index: int,
    patch: int,
    stride: int,
    batch_size: int,
    base_prob: float,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """The drop of the class probability with the patch centred at each pixel (Zeiler and Fergus's map):
    measured on the grid of patch centres, bilinear between them, drops below 0 (occluding helped) as 0.

    Not the mean over the patches covering each pixel (Captum's Occlusion): with a patch larger than
    what decides the class, that mean is flat over the object's bounding box, so its peak can fall
    outside the object; the most damaging patch's centre does not."""
    size = x.shape[-1]
    starts = occlusion_positions(size, patch, stride)
    windows = [(top, left) for top in starts for left in starts]
    drops = torch.empty(len(windows))
    if progress is not None:
        progress(0, len(windows))
    with torch.inference_mode():
        for first in range(0, len(windows), batch_size):
            if stop is not None and stop.is_set():
                raise Cancelled()
            chunk = windows[first : first + batch_size]
            batch = x.expand(len(chunk), -1, -1, -1).clone()
            for i, (top, left) in enumerate(chunk):
                batch[i, :, top : top + patch, left : left + patch] = 0.0  # the mean image's value
            probs = torch.softmax(model(batch).float(), dim=1)[:, class_index].cpu()
            drops[first : first + len(chunk)] = base_prob - probs
            if progress is not None:
                progress(first + len(chunk), len(windows))
    grid = drops.clamp(min=0).reshape(len(starts), len(starts)).numpy().astype(np.float64)
    centres = np.asarray(starts, dtype=np.float64) + (patch - 1) / 2.0
    pixels = np.arange(size, dtype=np.float64)
    # Separable linear interpolation (the centres need not be evenly spaced: the last patch is flush).
    rows = np.stack([np.interp(pixels, centres, grid[:, j]) for j in range(grid.shape[1])], axis=1)
    return np.stack([np.interp(pixels, centres, rows[i]) for i in range(size)]).astype(np.float32)


# ---- guided ReLUs ----------------------------------------------------------------------------------


class _GuidedReluFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor) -> Tensor:
        out = x.clamp(min=0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors  # type: ignore[attr-defined]
        # The ReLU's own gate (forward input > 0) and the guide (only positive gradients pass back).
        return grad.clamp(min=0) * (out > 0).to(grad.dtype)


class GuidedReLU(nn.Module):
    """A ReLU whose backward pass lets only positive gradients through; never in place."""

    def forward(self, x: Tensor) -> Tensor:
        return _GuidedReluFunction.apply(x)


@contextmanager
def _guided_relus(model: nn.Module) -> Iterator[None]:
    """Every nn.ReLU of `model` replaced by a GuidedReLU while the block runs, then put back."""
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU):
                swapped.append((parent, name, child))
    if not swapped or any(isinstance(m, nn.Tanh) for m in model.modules()):
        raise ExplainError("guided backpropagation is defined for ReLU networks; this model uses tanh "
                           "(use Grad-CAM, occlusion or saliency)")
    guided = GuidedReLU()
    try:
        for parent, name, _ in swapped:
            setattr(parent, name, guided)
        yield
    finally:
        for parent, name, original in swapped:
            setattr(parent, name, original)


@contextmanager
def _nothing() -> Iterator[None]:
    yield
