"""Local response normalisation: the paper's formula (no division by n) and torch's."""

from __future__ import annotations

import pytest
import torch

from alexgui.engine.model.lrn import LocalResponseNorm


def paper_lrn_loop(
    a: torch.Tensor, n: int = 5, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75
) -> torch.Tensor:
    """The paper's section 3.3 formula written out channel by channel, sum bounds clipped at the edges."""
    channels = a.shape[1]
    b = torch.empty_like(a)
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
        energy = sum(a[:, j] ** 2 for j in range(lo, hi + 1))
        b[:, i] = a[:, i] / (k + alpha * energy) ** beta
    return b


def _activations(channels: int = 9) -> torch.Tensor:
    # Large values so the denominator is far from k**beta and edge clipping matters.
    g = torch.Generator().manual_seed(0)
    return (torch.rand(2, channels, 4, 5, generator=g, dtype=torch.float64) * 60.0).relu()


def test_paper_formula_matches_direct_loop() -> None:
    a = _activations()
    got = LocalResponseNorm()(a)
    torch.testing.assert_close(got, paper_lrn_loop(a), rtol=1e-12, atol=1e-12)


def test_paper_formula_with_other_hyper_parameters_matches_loop() -> None:
    a = _activations(channels=4)  # fewer channels than the window: every sum is clipped
    got = LocalResponseNorm(size=7, alpha=3e-3, beta=0.5, k=1.0)(a)
    torch.testing.assert_close(got, paper_lrn_loop(a, n=7, k=1.0, alpha=3e-3, beta=0.5), rtol=1e-12, atol=1e-12)


def test_torch_formula_equals_torch_module() -> None:
    a = _activations()
    got = LocalResponseNorm(formula="torch")(a)
    want = torch.nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)(a)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_the_two_formulas_differ_by_the_division_by_n() -> None:
    a = _activations()
    paper = LocalResponseNorm(formula="paper")(a)
    torch_style = LocalResponseNorm(formula="torch")(a)
    assert not torch.allclose(paper, torch_style)
    # torch's formula is the paper's with alpha divided by n.
    torch.testing.assert_close(torch_style, paper_lrn_loop(a, alpha=1e-4 / 5), rtol=1e-12, atol=1e-12)


def test_channels_last_input_gives_the_same_result() -> None:
    a = _activations().float()
    lrn = LocalResponseNorm()
    torch.testing.assert_close(lrn(a.to(memory_format=torch.channels_last)), lrn(a))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"formula": "caffe"}, "formula"), ({"size": 4}, "odd"), ({"size": 0}, "at least 1")],
)
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LocalResponseNorm(**kwargs)
