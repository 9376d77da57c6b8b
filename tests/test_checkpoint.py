"""Checkpoints: exact round trips, safe loading of foreign files, clear errors, crash safety."""

from __future__ import annotations

import builtins
import os
import pickle
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from alexgui.engine.store.atomic import is_temporary, remove_stale_temporaries
from alexgui.engine.store.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_meta,
    save_checkpoint,
    sha256_of_tensors,
    split_prefix,
    weights_fingerprint,
)

REPO = Path(__file__).resolve().parents[1]


def sample_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "model.conv.weight": torch.randn(4, 3, 3, 3, generator=g),
        "model.half": torch.randn(5, 7, generator=g).to(torch.bfloat16),
        "model.fp16": torch.randn(3, generator=g).to(torch.float16),
        "model.count": torch.tensor(2**40 + 3, dtype=torch.int64),
        "stats.mean_image": torch.randint(0, 256, (8, 8, 3), dtype=torch.uint8, generator=g),
        "stats.mask": torch.tensor([True, False, True]),
        "optim.empty": torch.zeros(0, 4),
    }


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].shape == b[name].shape, name
        # Compare bytes, so NaN == NaN and -0.0 != 0.0.
        assert torch.equal(as_bytes(a[name]), as_bytes(b[name])), name


def as_bytes(t: torch.Tensor) -> torch.Tensor:
    return t.detach().reshape(-1).contiguous().view(torch.uint8)


# -- round trips -------------------------------------------------------------------------------


def test_round_trip_is_bit_exact_with_metadata(tmp_path: Path) -> None:
    tensors = sample_tensors()
    tensors["model.nan"] = torch.tensor([float("nan"), float("inf"), -0.0])
    meta = {
        "format": "alexgui-checkpoint/1",
        "epoch": 3,
        "class_names": ["cat", "dög"],
        "nested": {"lr": 0.01, "x": None},
    }
    path = tmp_path / "ckpt" / "last.safetensors"
    save_checkpoint(path, tensors, meta)
    loaded = load_checkpoint(path)
    assert loaded.path == path
    assert loaded.meta == meta
    assert_same_tensors(tensors, loaded.tensors)
    assert [p.name for p in path.parent.iterdir()] == ["last.safetensors"]


def test_saving_replaces_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, {"w": torch.zeros(3)}, {"step": 1})
    save_checkpoint(path, {"w": torch.ones(3), "b": torch.ones(1)}, {"step": 2})
    loaded = load_checkpoint(path)
    assert loaded.meta == {"step": 2}
    assert sorted(loaded.tensors) == ["b", "w"]
    assert torch.equal(loaded.tensors["w"], torch.ones(3))


def test_views_shared_storage_and_parameters_are_saved(tmp_path: Path) -> None:
    base = torch.arange(24, dtype=torch.float32)
    linear = torch.nn.Linear(4, 4)
    tensors = {
        "first": base[:12].view(3, 4),
        "second": base[12:].view(3, 4),
        "transposed": base.view(4, 6).t(),  # not contiguous
        "tied_a": linear.weight,  # a Parameter that requires grad
        "tied_b": linear.weight,  # the same tensor twice (tied weights)
    }
    path = tmp_path / "shared.safetensors"
    save_checkpoint(path, tensors, {})
    loaded = load_checkpoint(path).tensors
    for name, t in tensors.items():
        assert torch.equal(loaded[name], t.detach()), name
    assert not loaded["tied_a"].requires_grad


def test_meta_that_is_not_json_is_refused_and_the_old_file_survives(tmp_path: Path) -> None:
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, {"w": torch.ones(2)}, {"v": 1})
    with pytest.raises(CheckpointError, match="not JSON-serialisable") as info:
        save_checkpoint(path, {"w": torch.zeros(2)}, {"v": object()})
    assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match="not a tensor"):
        save_checkpoint(path, {"w": [1.0, 2.0]}, {"v": 2})  # type: ignore[dict-item]
    assert load_checkpoint(path).meta == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]


def test_split_prefix_and_part() -> None:
    tensors = sample_tensors()
    model = split_prefix(tensors, "model.")
    assert sorted(model) == ["conv.weight", "count", "fp16", "half"]
    assert model["conv.weight"] is tensors["model.conv.weight"]
    assert split_prefix(tensors, "nothing.") == {}


def test_read_meta_reads_only_the_header(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, sample_tensors(), {"epoch": 7})
    assert read_meta(path) == {"epoch": 7}
    path.write_bytes(path.read_bytes()[:-10])  # the data is cut but the header is whole
    assert read_meta(path) == {"epoch": 7}
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="empty file"):
        empty = tmp_path / "empty.safetensors"
        empty.write_bytes(b"")
        read_meta(empty)


def test_checkpoint_part_strips_the_prefix(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, sample_tensors(), {})
    assert sorted(load_checkpoint(path).part("stats.")) == ["mask", "mean_image"]


# -- foreign and hostile files --------------------------------------------------------------------


def small_state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    return net.state_dict()  # an OrderedDict, like torchvision's weight files


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin"])
@pytest.mark.parametrize("zipfile", [True, False])
def test_torch_state_dict_is_accepted(tmp_path: Path, suffix: str, zipfile: bool) -> None:
    state = small_state_dict()
    path = tmp_path / f"weights{suffix}"
    torch.save(state, path, _use_new_zipfile_serialization=zipfile)
    loaded = load_checkpoint(path)
    assert loaded.meta == {}
    assert_same_tensors(dict(state), loaded.tensors)


def test_pytorch_examples_wrapper_is_unwrapped(tmp_path: Path) -> None:
    state = small_state_dict()
    path = tmp_path / "model_best.pth.tar"
    torch.save({"epoch": 90, "arch": "alexnet", "state_dict": state, "best_acc1": torch.tensor(57.1)}, path)
    assert_same_tensors(dict(state), load_checkpoint(path).tensors)


def test_torch_file_that_is_not_a_flat_tensor_dict_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.pt"
    torch.save({"w": torch.ones(1), "epochs": 3, "nested": {"x": torch.ones(1)}}, path)
    with pytest.raises(CheckpointError, match="flat dict") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "epochs" in str(info.value)
    path2 = tmp_path / "list.pt"
    torch.save([torch.ones(1)], path2)
    with pytest.raises(CheckpointError, match="found a list"):
        load_checkpoint(path2)


class RunsPython:
    """Unpickling this runs `source` with exec: the classic code-execution pickle."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (builtins.exec, (self.source,))


class RunsShell:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.command,))


def write_marker_source(marker: Path) -> str:
    return f"import pathlib; pathlib.Path({str(marker)!r}).write_text('pwned')"


def hostile_payloads(tmp_path: Path, marker: Path) -> list[Path]:
    payloads = []
    as_torch_zip = tmp_path / "hostile_zip.pt"
    torch.save({"w": torch.ones(2), "x": RunsPython(write_marker_source(marker))}, as_torch_zip)
    payloads.append(as_torch_zip)
    as_raw_pickle = tmp_path / "hostile_raw.pth"
    as_raw_pickle.write_bytes(pickle.dumps({"w": RunsPython(write_marker_source(marker))}, protocol=2))
    payloads.append(as_raw_pickle)
    if os.name == "posix":
        as_shell = tmp_path / "hostile_shell.bin"
        torch.save({"w": RunsShell(f"touch {shlex.quote(str(marker))}")}, as_shell)
        payloads.append(as_shell)
    return payloads


def test_hostile_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    control = tmp_path / "control-marker"
    # The payloads are live: an unrestricted unpickler does run them.
    for payload in hostile_payloads(tmp_path, control):
        control.unlink(missing_ok=True)
        try:
            torch.load(payload, weights_only=False)
        except RuntimeError:  # the raw pickle runs, then fails torch's magic-number check
            pass
        assert control.exists(), payload
    marker = tmp_path / "marker"
    for payload in hostile_payloads(tmp_path, marker):
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(payload)
        message = str(info.value)
        refusal = "refused: the file contains a Python pickle payload beyond plain tensors ("
        assert message.startswith(f"{payload}: {refusal}")
        assert "alexgui never runs code from a file" in message
        assert not marker.exists(), f"loading {payload} ran code from it"


def test_safetensors_without_alexgui_metadata_loads_with_empty_meta(tmp_path: Path) -> None:
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.arange(4.0)}, path, metadata={"format": "pt"})
    loaded = load_checkpoint(path)
    assert loaded.meta == {}
    assert torch.equal(loaded.tensors["w"], torch.arange(4.0))


def test_safetensors_with_broken_alexgui_metadata_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "broken-meta.safetensors"
    save_file({"w": torch.arange(4.0)}, path, metadata={"alexgui": "{not json"})
    with pytest.raises(CheckpointError, match="metadata in the header is not valid JSON"):
        load_checkpoint(path)
    save_file({"w": torch.arange(4.0)}, path, metadata={"alexgui": "[1, 2]"})
    with pytest.raises(CheckpointError, match="not a JSON object"):
        load_checkpoint(path)


def make_bad_files(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.safetensors"
    save_checkpoint(good, {"w": torch.ones(1000)}, {"step": 1})
    data = good.read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    files = {
        "missing": tmp_path / "missing.safetensors",
        "folder": tmp_path / "a-folder.safetensors",
        "empty": tmp_path / "empty.safetensors",
        "text_safetensors": tmp_path / "notes.safetensors",
        "text_pt": tmp_path / "notes.pt",
        "text_other": tmp_path / "notes.txt",
        "cut_in_data": tmp_path / "cut-data.safetensors",
        "cut_in_header": tmp_path / "cut-header.safetensors",
        "cut_in_length": tmp_path / "cut-length.safetensors",
        "random_bytes": tmp_path / "random.ckpt",
        "cut_torch_zip": tmp_path / "cut.pt",
        "cut_legacy_torch": tmp_path / "cut-legacy.pt",
    }
    files["folder"].mkdir()
    files["empty"].write_bytes(b"")
    files["text_safetensors"].write_text("these are my notes, not weights\n", encoding="utf-8")
    files["text_pt"].write_text("hello world\n", encoding="utf-8")
    files["text_other"].write_text("# just a text file\n", encoding="utf-8")
    files["cut_in_data"].write_bytes(data[: header_end + 100])
    files["cut_in_header"].write_bytes(data[: header_end - 5])
    files["cut_in_length"].write_bytes(data[:5])
    files["random_bytes"].write_bytes(random.Random(0).randbytes(4096))
    zipped = tmp_path / "z.pt"
    torch.save({"w": torch.ones(1000)}, zipped)
    files["cut_torch_zip"].write_bytes(zipped.read_bytes()[:-400])
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(1000)}, legacy, _use_new_zipfile_serialization=False)
    files["cut_legacy_torch"].write_bytes(legacy.read_bytes()[:200])
    return files


EXPECTED_PROBLEM = {
    "missing": "no such file",
    "folder": "is a folder",
    "empty": "empty file",
    "text_safetensors": "not a valid safetensors file",
    "text_pt": "not a PyTorch checkpoint",
    "text_other": "starts with text",
    "cut_in_data": "not a readable safetensors file",
    "cut_in_header": "truncated",
    "cut_in_length": "too short",
    "random_bytes": "not a checkpoint",
    "cut_torch_zip": "not a readable PyTorch file",
    "cut_legacy_torch": "",  # a cut pickle: torch reports it in various ways; the file must be named
}


def test_bad_files_give_checkpoint_errors_naming_the_file(tmp_path: Path) -> None:
    files = make_bad_files(tmp_path)
    for kind, path in files.items():
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        message = str(info.value)
        assert message.startswith(f"{path}: "), (kind, message)
        assert EXPECTED_PROBLEM[kind] in message, (kind, message)
        assert info.value.path == str(path)


# -- fingerprints ----------------------------------------------------------------------------------


def test_fingerprint_is_stable_and_sensitive() -> None:
    tensors = sample_tensors()
    fp = weights_fingerprint(tensors)
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert weights_fingerprint(dict(reversed(list(tensors.items())))) == fp
    assert weights_fingerprint({k: v.clone() for k, v in tensors.items()}) == fp
    assert sha256_of_tensors(tensors).startswith(fp)

    changed_value = dict(tensors)
    changed_value["model.conv.weight"] = tensors["model.conv.weight"].clone()
    changed_value["model.conv.weight"][0, 0, 0, 0] += 1e-6
    renamed = {("x" + k if k == "model.fp16" else k): v for k, v in tensors.items()}
    retyped = dict(tensors)
    retyped["stats.mean_image"] = tensors["stats.mean_image"].to(torch.int8)
    reshaped = dict(tensors)
    reshaped["model.conv.weight"] = tensors["model.conv.weight"].reshape(12, 9)
    variants = [changed_value, renamed, retyped, reshaped]
    assert len({fp, *(weights_fingerprint(v) for v in variants)}) == 1 + len(variants)


def test_fingerprint_survives_a_save_and_load(tmp_path: Path) -> None:
    tensors = sample_tensors()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, tensors, {})
    assert weights_fingerprint(load_checkpoint(path).tensors) == weights_fingerprint(tensors)


# -- crash safety ------------------------------------------------------------------------------

SAVER = """
import sys, torch
from alexgui.engine.store.checkpoint import save_checkpoint
target, version = sys.argv[1], int(sys.argv[2])
while True:
    version += 1
    tensors = {
        "a": torch.full((4_000_000,), version, dtype=torch.int32),
        "b": torch.full((2_000_000,), float(version), dtype=torch.float64),
        "c": torch.full((8_000_000,), float(version), dtype=torch.bfloat16),
    }
    save_checkpoint(target, tensors, {"version": version})
"""


def wait_for(condition, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.002)


@pytest.mark.slow
def test_killed_saver_leaves_the_previous_checkpoint_loadable(tmp_path: Path) -> None:
    """SIGKILL a process that keeps saving ~48 MB checkpoints; the file is always one whole version."""
    target = tmp_path / "last.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    rng = random.Random(1234)
    versions_seen = []
    for trial in range(3):
        first_version = trial * 1000
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(target), str(first_version)], env=env, cwd=REPO)
        try:
            wait_for(lambda first_version=first_version: target.exists() and read_meta(target)["version"] > first_version)
            if trial % 2 == 0:
                # Kill while a save is surely in flight: its temporary file exists.
                wait_for(lambda: any(is_temporary(p) for p in tmp_path.iterdir()))
            else:
                time.sleep(rng.uniform(0.0, 0.5))
        finally:
            proc.kill()
            proc.wait()
        loaded = load_checkpoint(target)
        version = loaded.meta["version"]
        assert version > first_version
        assert torch.equal(loaded.tensors["a"], torch.full((4_000_000,), version, dtype=torch.int32))
        assert torch.equal(loaded.tensors["b"], torch.full((2_000_000,), float(version), dtype=torch.float64))
        assert torch.equal(loaded.tensors["c"], torch.full((8_000_000,), float(version), dtype=torch.bfloat16))
        versions_seen.append(version)
        leftovers = [p for p in tmp_path.iterdir() if p != target]
        assert all(is_temporary(p) for p in leftovers), leftovers
        remove_stale_temporaries(tmp_path)
        assert list(tmp_path.iterdir()) == [target]
    assert len(set(versions_seen)) == len(versions_seen)


def test_checkpoint_error_survives_pickling_between_processes() -> None:
    error = CheckpointError("/x/last.safetensors", "empty file (0 bytes)")
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and copy.path == error.path and copy.problem == error.problem
