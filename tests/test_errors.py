"""One error family: every error written for the user is an AlexguiError, with the file and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from alexgui.config import ConfigError
from alexgui.engine.data.dataset import DatasetError
from alexgui.engine.data.imageio import ImageError, load_256
from alexgui.engine.data.stats import StatsStopped
from alexgui.engine.devices import DeviceError
from alexgui.engine.inference.onnx_export import ExportError
from alexgui.engine.inference.onnx_providers import OnnxModelError
from alexgui.engine.inference.predict import PredictorError
from alexgui.engine.inference.retrieval import RetrievalError
from alexgui.engine.model.placement import PlacementError
from alexgui.engine.model.zoo import DownloadCancelled, OfflineError, ZooError
from alexgui.engine.store.checkpoint import CheckpointError
from alexgui.engine.store.rundir import RunDirError
from alexgui.engine.training.control import TrainingError
from alexgui.errors import AlexguiError, Cancelled


def test_a_path_and_a_problem_read_as_one_line() -> None:
    e = AlexguiError(Path("/data/x.jpg"), "not an image")
    assert str(e) == "/data/x.jpg: not an image"
    assert (e.path, e.problem) == ("/data/x.jpg", "not an image")
    plain = AlexguiError("no GPU")
    assert str(plain) == "no GPU" and plain.path is None and plain.problem == "no GPU"
    with pytest.raises(TypeError):
        AlexguiError()


@pytest.mark.parametrize(
    "kind",
    [ConfigError, DatasetError, ImageError, DeviceError, PlacementError, ExportError, OnnxModelError, PredictorError,
     RetrievalError, ZooError, OfflineError, CheckpointError, RunDirError, TrainingError],
)  # fmt: skip
def test_every_user_facing_error_is_in_the_family(kind: type) -> None:
    assert issubclass(kind, AlexguiError)


def test_one_cancelled_for_every_way_of_stopping() -> None:
    assert StatsStopped is Cancelled
    assert issubclass(DownloadCancelled, Cancelled) and issubclass(DownloadCancelled, ZooError)


def test_the_file_errors_keep_their_messages(tmp_path: Path) -> None:
    missing = tmp_path / "gone.png"
    with pytest.raises(ImageError) as info:
        load_256(missing)
    assert info.value.path == str(missing) and str(info.value).startswith(f"{missing}: ")
    assert info.value.reason == info.value.problem
    onnx = OnnxModelError(tmp_path / "m.onnx", "empty file (0 bytes)")
    assert str(onnx) == f"{tmp_path / 'm.onnx'}: empty file (0 bytes)" and isinstance(onnx, PredictorError)
