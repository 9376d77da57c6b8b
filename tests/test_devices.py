"""The one device vocabulary (engine/devices.py): parsing, one message per mistake, the choices offered."""

from __future__ import annotations

import pytest
import torch

from alexgui.engine.devices import (
    DeviceError,
    device_choices,
    parse_device,
    parse_devices,
)


def _two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"Fake GPU {i}")


def test_parse_devices_accepts_one_or_two() -> None:
    assert parse_devices("cpu") == [torch.device("cpu")]
    assert parse_devices("cpu, cpu") == [torch.device("cpu"), torch.device("cpu")]


@pytest.mark.parametrize(
    ("spec", "words"),
    [("cpu,cpu,cpu", "two joined by a comma"), ("tpu", "unknown device"), ("", "give one device"),
     ("cpu,", "give one device"), ("meta", "unsupported device")],
)  # fmt: skip
def test_parse_devices_refuses_with_reason(spec: str, words: str) -> None:
    with pytest.raises(DeviceError, match=words):
        parse_devices(spec)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_parse_devices_names_missing_gpu() -> None:
    with pytest.raises(DeviceError, match="no usable CUDA GPU"):
        parse_devices("cuda:0,cuda:1")


def test_device_choices_offer_two_towers_with_two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_choices() == [("cpu", "CPU")]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"Fake GPU {i}")
    choices = device_choices()
    assert [c.spec for c in choices] == ["cpu", "cuda:0", "cuda:1", "cuda:0,cuda:1"]
    assert "one tower each" in choices[-1].label and "Fake GPU 1" in choices[2].label


def test_two_patched_gpus_parse_and_check_their_index(monkeypatch: pytest.MonkeyPatch) -> None:
    _two_gpus(monkeypatch)
    assert parse_devices("cuda:0,cuda:1") == [torch.device("cuda", 0), torch.device("cuda", 1)]
    assert parse_devices("cuda") == [torch.device("cuda", 0)]
    with pytest.raises(DeviceError, match="only 2 CUDA GPU"):
        parse_devices("cuda:2")


def test_one_device_where_two_towers_make_no_sense() -> None:
    assert parse_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError, match="two devices are for training"):
        parse_device("cpu,cpu")


def test_mps_is_offered_and_parsed_only_where_torch_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert [c.spec for c in device_choices()] == ["cpu"]
    with pytest.raises(DeviceError, match="no usable Apple GPU"):
        parse_devices("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert [c.spec for c in device_choices()] == ["cpu", "mps"]
    assert parse_devices("mps") == [torch.device("mps")]


def test_a_broken_cuda_driver_still_offers_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> int:
        raise RuntimeError("CUDA driver initialization failed")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", broken)
    assert [c.spec for c in device_choices()] == ["cpu"]
