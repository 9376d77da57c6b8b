"""Local response normalisation (Krizhevsky et al. 2012, section 3.3).

The paper's formula, applied across channels at every position after ReLU in conv1 and conv2:

    b[i] = a[i] / (k + alpha * sum_{j = max(0, i - n//2)}^{min(N - 1, i + n//2)} a[j]^2) ** beta

with k=2, n=5, alpha=1e-4, beta=0.75. The paper does not divide alpha by n; torch.nn.LocalResponseNorm,
Caffe and cuda-convnet do. formula="paper" (the default) follows the paper; formula="torch" follows
torch, so weights trained elsewhere with the other convention can still be matched.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from alexgui.config import LrnFormula

# The paper's hyper-parameters, "determined using a validation set".
PAPER_SIZE = 5
PAPER_ALPHA = 1e-4
PAPER_BETA = 0.75
PAPER_K = 2.0


class LocalResponseNorm(nn.Module):
    """Normalise each channel by the energy of its `size` neighbours (channel edges clipped).

    formula="paper": alpha multiplies the plain sum of squares (the paper's text).
    formula="torch": alpha multiplies the mean of the squares over the window, i.e. alpha / size times
    the sum, exactly torch.nn.LocalResponseNorm.
    """

    def __init__(
        self,
        size: int = PAPER_SIZE,
        alpha: float = PAPER_ALPHA,
        beta: float = PAPER_BETA,
        k: float = PAPER_K,
        formula: LrnFormula = "paper",
    ) -> None:
        super().__init__()
        if formula not in ("paper", "torch"):
            raise ValueError(f"LRN formula must be 'paper' or 'torch', got {formula!r}")
        if size < 1:
            raise ValueError(f"LRN size must be at least 1, got {size}")
        if formula == "paper" and size % 2 == 0:
            # The paper's window [i - n/2, i + n/2] is symmetric; an even n has no such window.
            raise ValueError(f"the paper's LRN window needs an odd size, got {size}")
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.k = k
        self.formula = formula
        # The paper's alpha multiplies the plain sum of squares; torch's the sum divided by `size`.
        self._alpha = alpha if formula == "paper" else alpha / size

    def forward(self, x: Tensor) -> Tensor:
        # The window sum as `size` shifted slices of the zero-padded squares (padding as torch's LRN:
        # size // 2 channels before, (size - 1) // 2 after). torch's F.local_response_norm gets the same
        # sum from a 3-D average pool, which on the CPU made LRN half of the paper net's forward time
        # and its backward ~3x slower than this (benchmarks/README.md, "LRN").
        channels = x.shape[1]
        pad = (0, 0) * (x.dim() - 2) + (self.size // 2, (self.size - 1) // 2)
        squares = F.pad(x * x, pad)
        energy = squares[:, :channels]
        for shift in range(1, self.size):
            energy = energy + squares[:, shift : shift + channels]
        # x / d**beta, not x * d**-beta: the ONNX export rewrites Pow(d, 0.75) as square roots (faster).
        return x / (energy * self._alpha + self.k).pow(self.beta)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, formula={self.formula!r}"
