"""Every argument a user can give is checked before any work: one line naming the argument and what it
accepts, a non-zero exit, no traceback and nothing created (issue 12, items 3 and 5); special files
and undecodable names given to `classify` are reported and skipped, never hang (item 4)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alexgui.cli import build_parser, main
from alexgui.engine.devices import mps_available
from alexgui.engine.inference.onnx_providers import gpu_present
from tests.explore_helpers import train_colour_checkpoint, write_colour_folder
from tests.helpers import make_dataset

# Commands checked in this process (their checks come before any model is loaded, so a model path
# that does not exist proves the order), and commands run as real processes (train and experiment
# would start work in this process if a check came late).
IN_PROCESS = ("classify", "classify-onnx", "evaluate", "explain", "top-images", "index", "neighbours")
SUBPROCESS = ("train", "experiment")


def command_line(case: str, tmp: Path) -> list[str]:
    """A command line that is fine but for the --device appended to it; its outputs go under tmp."""
    model, image = str(tmp / "model.safetensors"), str(tmp / "image.png")
    data = str(tmp / "data")
    small = ["--max-steps", "1", "--batch-size", "2", "--workers", "0"]
    return {
        "classify": ["classify", "--model", model, image],
        "classify-onnx": ["classify", "--model", model, "--backend", "onnx", image],
        "evaluate": ["evaluate", "--model", model, "--data", str(tmp)],
        "explain": ["explain", "--model", model, image, "--out", str(tmp / "out")],
        "top-images": ["top-images", "--model", model, "--images", str(tmp), "--layer", "conv5", "--unit", "0",
                       "--out", str(tmp / "out")],
        "index": ["index", "--model", model, "--images", str(tmp), "--out", str(tmp / "out")],
        "neighbours": ["neighbours", "--index", str(tmp / "index"), image],
        "train": ["train", "--data", data, "--out", str(tmp / "out"), *small],
        "experiment": ["experiment", "relu-vs-tanh", "--data", data, "--out", str(tmp / "out"), "--epochs", "1", *small],
    }[case]


def command_of(case: str) -> str:
    return case.removesuffix("-onnx")


def bad_devices(case: str) -> list[str]:
    """Values of --device this machine must refuse for that command (fewer where each costs a process)."""
    if case in SUBPROCESS:
        return ["nonsense", "cuda:99", ""]
    values = ["nonsense", "cuda:99", "", "cpu;rm", "cpu,cpu"]  # cpu,cpu: two devices are for training only
    onnx = case == "classify-onnx"
    if not (gpu_present() if onnx else torch.cuda.is_available()):
        values.append("cuda")  # well-formed, but no such GPU here
    if not mps_available() and not onnx:
        values.append("mps")
    return values


def assert_one_line_about(err: str, words: str) -> None:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert words in lines[0], err


def test_every_command_with_a_device_option_is_covered() -> None:
    parser, _ = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    with_device = {name for name, p in sub.choices.items() if any("--device" in a.option_strings for a in p._actions)}
    assert with_device == {command_of(c) for c in IN_PROCESS + SUBPROCESS}


@pytest.mark.parametrize("case", IN_PROCESS)
def test_bad_device_is_one_line_before_any_work(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for value in bad_devices(case):
        assert main([*command_line(case, tmp_path), "--device", value]) == 2, value
        captured = capsys.readouterr()
        assert_one_line_about(captured.err, f"alexgui {command_of(case)}: argument --device: ")
        assert repr(value) in captured.err or value in captured.err
        assert captured.out == ""
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", SUBPROCESS)
def test_bad_device_for_training_is_one_line_and_leaves_no_folder(case: str, tmp_path: Path) -> None:
    make_dataset(tmp_path / "data", classes=2, train_per_class=2, val_per_class=1)
    for value in bad_devices(case):
        out = run_alexgui(*command_line(case, tmp_path), "--device", value, timeout=120)
        assert out.returncode == 2, (value, out.stderr)
        assert_one_line_about(out.stderr, "device")
        assert not (tmp_path / "out").exists(), value


def run_alexgui(*args: str, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alexgui", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def test_a_real_process_says_one_line_for_a_bad_device(tmp_path: Path) -> None:
    out = run_alexgui(*command_line("neighbours", tmp_path), "--device", "cpu,cpu", timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert_one_line_about(out.stderr, "alexgui neighbours: argument --device: device 'cpu,cpu': give one device here")


# (command line, the argument, values it must refuse); each is out of range or not a number.
NUMBERS = [
    (["classify", "--model", "m.safetensors", "x.png", "--top"], "--top", ["0", "-3", "100001", "five"]),
    (["summary", "--classes"], "--classes", ["1", "0", "100000000", "1e3"]),
    (["index", "--model", "m", "--images", ".", "--out", "o", "--batch-size"], "--batch-size", ["0", "-1", "1025"]),
    (["neighbours", "--index", "i", "q.png", "--k"], "--k", ["0", "10001", "2.5"]),
    (["export", "--model", "m", "--out", "o.onnx", "--opset"], "--opset", ["17", "25", ""]),
]


@pytest.mark.parametrize(("argv", "flag", "values"), NUMBERS, ids=[f"{a[0]} {f}" for a, f, _ in NUMBERS])
def test_numbers_out_of_range_are_refused_naming_the_range(
    argv: list[str], flag: str, values: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # relative outputs ("o", "o.onnx") would land here
    for value in values:
        assert main([*argv, value]) == 2, value
        err = capsys.readouterr().err
        assert_one_line_about(err, f"alexgui {argv[0]}: argument {flag}: ")
        assert "give an integer from" in err
    assert list(tmp_path.iterdir()) == []


def test_numbers_at_the_ends_of_their_range_are_taken(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "--classes", "100000"]) == 0  # built on the meta device: no 1.6 GB of weights
    assert capsys.readouterr().out.splitlines()[-1] == "Total parameters: 466,568,224"
    assert main(["summary", "--classes", "2", "--arch", "torchvision"]) == 0


def test_no_numeric_option_of_these_commands_takes_any_number() -> None:
    """A plain type=int or float accepts 0, negatives and absurd sizes: each number has its range."""
    parser, _ = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("gui", "summary", "classify", "index", "neighbours", "export"):
        for action in sub.choices[name]._actions:
            assert action.type not in (int, float), f"alexgui {name} {action.option_strings}: no range checked"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["gui", "--run", "missing"], "alexgui gui: argument --run: missing: no such folder"),
        (["gui", "--data", "file.txt"], "alexgui gui: argument --data: file.txt: not a folder"),
        (["index", "--model", "m", "--images", "missing", "--out", "o"], "argument --images: missing: no such folder"),
        (["export", "--model", "m", "--out", "o.onnx", "--images", ""], "argument --images: must not be empty"),
        (["classify", "--top", "2"], "alexgui classify: the following arguments are required: --model, IMAGE_OR_DIR"),
    ],
)
def test_folders_and_missing_arguments_are_one_line(
    argv: list[str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file.txt").write_text("not a folder")
    assert main(argv) == 2
    assert_one_line_about(capsys.readouterr().err, words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_help_and_version_return_zero_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert main(["index", "--help"]) == 0
    assert "--batch-size" in capsys.readouterr().out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_classify_skips_special_files_and_odd_names_without_hanging(tmp_path: Path) -> None:
    """A FIFO would block open() forever: it is named with its reason and the rest are classified. A
    name that is not UTF-8 is printed with its bytes escaped even where stdout is strict UTF-8."""
    model = train_colour_checkpoint(tmp_path / "model.safetensors")
    (good,) = write_colour_folder(tmp_path / "imgs", per_class=1)[:1]
    os.mkfifo(tmp_path / "pipe.png")
    folder = tmp_path / "folder"
    folder.mkdir()
    os.mkfifo(folder / "pipe.jpg")  # found by the folder walk (an image suffix)
    odd = os.fsencode(folder) + b"/\xffred.png"
    with open(good, "rb") as src, open(odd, "wb") as dst:
        dst.write(src.read())
    out = run_alexgui("classify", "--model", str(model), str(tmp_path / "pipe.png"), str(folder), "/dev/null",
                      str(good), timeout=240, env={"PYTHONIOENCODING": "utf-8"})
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    assert f"{tmp_path / 'pipe.png'}: ERROR a named pipe (FIFO), not a regular file; not opened" in lines
    assert f"{folder / 'pipe.jpg'}: ERROR a named pipe (FIFO), not a regular file; not opened" in lines
    assert "/dev/null: ERROR a character device, not a regular file; not opened" in lines
    assert any(line.startswith(f"{folder}/\\xffred.png  [") for line in lines), out.stdout
    assert any(line.startswith(f"{good}  [") for line in lines), out.stdout
    assert "3 of 5 file(s) could not be classified" in out.stderr
