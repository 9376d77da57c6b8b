"""bf16 autocast on CPUs that have bf16 instructions (engine/training/precision.py): the probe reads
torch's CPU features, a step in bf16 matches fp32 within bf16's precision, and a CPU without them
trains in fp32 and says so."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from alexgui.config import ModelConfig
from alexgui.engine.model.networks import build_model
from alexgui.engine.training import precision
from alexgui.engine.training.precision import autocast, bf16_active, cpu_has_bf16, precision_note

CPU = torch.device("cpu")


@pytest.fixture
def probe() -> Iterator[None]:
    """The probe's cached answer forgotten before and after, so a patched query is asked."""
    cpu_has_bf16.cache_clear()
    yield
    cpu_has_bf16.cache_clear()


@pytest.mark.parametrize(
    ("capabilities", "expected"),
    [
        ({"architecture": "x86_64", "avx2": True, "avx512_f": True, "avx512_bf16": False}, False),
        ({"architecture": "x86_64", "avx512_f": True, "avx512_bf16": True}, True),
        ({"architecture": "x86_64", "amx_bf16": True, "amx_tile": True}, True),
        ({"architecture": "arm64", "neon": True, "bf16": True}, True),
        ({"architecture": "arm64", "neon": True}, False),
    ],
)
def test_the_probe_reads_torchs_cpu_features(
    probe: None, monkeypatch: pytest.MonkeyPatch, capabilities: dict[str, Any], expected: bool
) -> None:
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    assert cpu_has_bf16() is expected


def test_a_torch_without_the_query_means_fp32(probe: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(torch.cpu, "get_capabilities")
    assert cpu_has_bf16() is False


def test_the_probe_agrees_with_this_machine(probe: None) -> None:
    caps = torch.cpu.get_capabilities()
    assert cpu_has_bf16() is bool(caps.get("avx512_bf16") or caps.get("amx_bf16") or caps.get("bf16"))


def test_which_devices_get_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert bf16_active(CPU, True) and bf16_active(torch.device("cuda", 0), True)
    assert not bf16_active(CPU, False) and not bf16_active(torch.device("mps"), True)
    assert precision_note(CPU, True) == "bf16 autocast" and precision_note(CPU, False) == ""
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert not bf16_active(CPU, True)
    assert precision_note(CPU, True) == "fp32: this CPU has no bf16 instructions, so --bf16 is not used"
    assert precision_note(torch.device("mps"), True) == "fp32: bf16 autocast is not used on mps"


def test_without_bf16_instructions_the_cpu_computes_in_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    layer = torch.nn.Linear(8, 4)
    with autocast(CPU, bf16=True):
        assert layer(torch.randn(2, 8)).dtype == torch.float32
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    with autocast(CPU, bf16=True):  # the same call with the instructions: bf16 (emulated here if need be)
        assert layer(torch.randn(2, 8)).dtype == torch.bfloat16


def paper_step(bf16: bool, crop: int = 63, batch: int = 2) -> tuple[float, torch.Tensor, torch.dtype]:
    """One training step of the paper's network as the loop takes it: the loss, conv1's gradient
    (tower 0) and the logits' dtype. The same weights, inputs and dropout draws for both precisions."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=10)).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, crop, crop, generator=torch.Generator().manual_seed(1)) * 50  # mean-free pixels
    labels = torch.arange(batch) % 10
    torch.manual_seed(2)  # dropout
    with autocast(CPU, bf16):
        logits = model(x)
        loss = F.cross_entropy(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad = dict(model.named_parameters())["towers.0.conv1.weight"].grad
    assert grad is not None
    optimizer.step()
    return loss.item(), grad.detach().clone(), logits.dtype


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bf16 instructions (bf16 would be emulated, slowly)")
def test_one_bf16_step_of_the_paper_net_matches_fp32() -> None:
    loss32, grad32, dtype32 = paper_step(bf16=False)
    loss16, grad16, dtype16 = paper_step(bf16=True)
    assert (dtype32, dtype16) == (torch.float32, torch.bfloat16)  # bf16 really used
    # bf16 keeps 8 bits of mantissa (about 0.4%); a step's loss and gradient direction agree to that.
    assert loss16 == pytest.approx(loss32, rel=0.02)
    assert F.cosine_similarity(grad16.flatten(), grad32.flatten(), dim=0).item() > 0.95


def test_bf16_numerics_on_any_cpu_with_a_small_net(monkeypatch: pytest.MonkeyPatch) -> None:
    # Where the paper net's step above is skipped (no bf16 instructions: emulated, it takes several times
    # as long), the same comparison on a conv1-sized layer checks the wiring and the tolerance.
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)

    def step(bf16: bool) -> tuple[float, torch.Tensor]:
        torch.manual_seed(0)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 48, 11, stride=4, padding=2),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(48, 10),
        )
        x = torch.randn(4, 3, 63, 63, generator=torch.Generator().manual_seed(1))
        with autocast(CPU, bf16):
            logits = net(x)
            assert logits.dtype == (torch.bfloat16 if bf16 else torch.float32)
            loss = F.cross_entropy(logits.float(), torch.arange(4))
        loss.backward()
        grad = net[0].weight.grad
        assert grad is not None
        return loss.item(), grad.flatten()

    (loss32, grad32), (loss16, grad16) = step(False), step(True)
    assert loss16 == pytest.approx(loss32, rel=0.02)
    assert F.cosine_similarity(grad16, grad32, dim=0).item() > 0.98
