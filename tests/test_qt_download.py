"""The ImageNet weights flow end to end (issue #19), offscreen: Classify > Model > torchvision ImageNet
AlexNet against a local HTTP server on 127.0.0.1 that the model registry points at.

The registry is a copy of the shipped one with its source, size and SHA-256 replaced (zoo.REGISTRY_PATH),
torch's hub folder is a temporary one (TORCH_HOME), and the download, the checksum, the atomic write,
the chooser's question, progress, Cancel and messages are the real ones. Only the last step, building
torchvision's 61-million-parameter network from the verified file, is replaced by a stand-in that
checks it was handed the verified file (loading real torchvision weights is tested in test_predict).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox

from alexgui.engine.inference.predict import TorchPredictor
from alexgui.engine.model import zoo
from alexgui.qt.panels.model_chooser import ModelChooser
from alexgui.qt.settings import AppSettings
from tests.explore_helpers import MeanColourPredictor

WAIT_MS = 30_000
FILENAME = "alexnet-test-0123abcd.pth"
PAYLOAD_BYTES = 3 * zoo.CHUNK + 12_345  # several chunks: progress is reported between them


@dataclass
class Server:
    url: str
    payload: bytes
    sha256: str
    gate: threading.Event = field(default_factory=threading.Event)  # set: the rest of the file may go
    gated: bool = False  # hold the file after its first chunk until `gate` is set (the Cancel test)


@pytest.fixture
def server() -> Iterator[Server]:
    payload = bytes(range(256)) * (PAYLOAD_BYTES // 256) + b"x" * (PAYLOAD_BYTES % 256)
    state = Server("", payload, hashlib.sha256(payload).hexdigest())

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name
            if self.path != f"/{FILENAME}":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            try:
                first = zoo.CHUNK + 1000
                self.wfile.write(payload[:first])
                self.wfile.flush()
                if state.gated:
                    state.gate.wait(WAIT_MS / 1000)
                self.wfile.write(payload[first:])
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading (Cancel)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/{FILENAME}"
    try:
        yield state
    finally:
        state.gate.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """torch's hub folder in the test's own directory: where torchvision (and the zoo) keep weights."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def use_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, sha256: str, size: int) -> zoo.ZooEntry:
    """The shipped registry with the torchvision entry pointing at `url`, made the app's registry."""
    data = json.loads(zoo.REGISTRY_PATH.read_text(encoding="utf-8"))
    for entry in data["models"]:
        if entry["name"] == zoo.DEFAULT_MODEL:
            entry.update(url=url, sha256=sha256, bytes=size, filename=FILENAME)
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    monkeypatch.setattr(zoo, "REGISTRY_PATH", path)
    return zoo.default_entry()


@pytest.fixture
def loaded_from(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Stands in for building torchvision's network from a weights file: records the file it gets."""
    files: list[Path] = []

    def from_torchvision_file(cls, path, device="cpu"):  # type: ignore[no-untyped-def]
        files.append(Path(path))
        predictor = MeanColourPredictor(fingerprint=hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16])
        predictor.source = str(path)
        return predictor

    monkeypatch.setattr(TorchPredictor, "from_torchvision_file", classmethod(from_torchvision_file))
    return files


def answer_yes(monkeypatch: pytest.MonkeyPatch, qtbot=None) -> list[str]:  # type: ignore[no-untyped-def]
    """Every question answered Yes. With `qtbot`, the way issue #19 met it: the user reads the question
    while the loading job that asked it ends (the dialog runs its own event loop), and answers after."""
    asked: list[str] = []

    def question(parent, title, text):  # type: ignore[no-untyped-def]
        asked.append(text)
        if qtbot is not None:
            qtbot.waitUntil(lambda: not parent.is_busy(), timeout=WAIT_MS)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", question)
    return asked


def shown_chooser(qtbot) -> tuple[ModelChooser, list[tuple[str, str]]]:  # type: ignore[no-untyped-def]
    chooser = ModelChooser()
    qtbot.addWidget(chooser)
    chooser.resize(380, 200)  # the side dock's width at 1280x800
    chooser.show()  # the chooser asks its question only when it is on screen
    log: list[tuple[str, str]] = []
    chooser.logMessage.connect(lambda text, level: log.append((text, level)))
    return chooser, log


def record_progress(chooser: ModelChooser, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts the progress bar showed, as they were shown."""
    shown: list[str] = []
    advance = chooser.progress.advance

    def spy(done: int, total: int, label: str | None = None) -> None:
        advance(done, total, label)
        shown.append(chooser.progress.bar.format())

    monkeypatch.setattr(chooser.progress, "advance", spy)
    return shown


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("answered", ["at once", "after the loading job ended"])
def test_download_shows_progress_verifies_and_loads(  # type: ignore[no-untyped-def]
    qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: Server, hub: Path, loaded_from: list[Path],
    answered: str,
) -> None:
    entry = use_registry(tmp_path, monkeypatch, server.url, server.sha256, len(server.payload))
    asked = answer_yes(monkeypatch, qtbot if answered == "after the loading job ended" else None)
    chooser, log = shown_chooser(qtbot)
    shown = record_progress(chooser, monkeypatch)
    with qtbot.waitSignal(chooser.predictorChanged, timeout=WAIT_MS):
        chooser.torchvision_action.trigger()  # Classify > Model > torchvision ImageNet AlexNet
    qtbot.waitUntil(lambda: not chooser.is_loading(), timeout=WAIT_MS)

    assert len(asked) == 1 and server.url in asked[0] and str(entry.hub_path) in asked[0] and "3 MB" in asked[0]
    assert any("downloading 1 / 3 MB" in text for text in shown), shown  # bytes, between chunks
    assert any("checking the SHA-256" in text for text in shown)
    assert files_in(hub) == [FILENAME]  # the file alone: no temporary left beside it
    assert (hub / FILENAME).read_bytes() == server.payload
    zoo.verify_file(hub / FILENAME, server.sha256)
    assert loaded_from == [hub / FILENAME]
    assert chooser.predictor is not None and chooser.predictor.source == str(hub / FILENAME)
    assert chooser.label.text().startswith(f"torchvision ImageNet AlexNet ({FILENAME})")
    assert str(hub / FILENAME) in chooser.label.toolTip()
    assert not chooser.problem.isVisibleTo(chooser) and not chooser.progress.isVisibleTo(chooser)
    assert [level for _, level in log] == ["error", "good", "info"]  # not here; downloaded; loaded
    assert "SHA-256 verified" in log[1][0] and log[2][0].startswith("Model loaded in")

    # The second time the verified file is used as it is: no question, no download.
    chooser.set_predictor(None)
    with qtbot.waitSignal(chooser.predictorChanged, timeout=WAIT_MS):
        chooser.torchvision_action.trigger()
    qtbot.waitUntil(lambda: not chooser.is_loading(), timeout=WAIT_MS)
    assert len(asked) == 1 and loaded_from == [hub / FILENAME] * 2


def test_a_mismatched_checksum_keeps_nothing_and_says_so(  # type: ignore[no-untyped-def]
    qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: Server, hub: Path, loaded_from: list[Path]
) -> None:
    wrong = hashlib.sha256(b"other weights").hexdigest()
    use_registry(tmp_path, monkeypatch, server.url, wrong, len(server.payload))
    answer_yes(monkeypatch)
    chooser, log = shown_chooser(qtbot)
    failures: list[str] = []
    chooser.loadFailed.connect(failures.append)
    chooser.torchvision_action.trigger()
    qtbot.waitUntil(lambda: len(failures) == 2 and not chooser.is_loading(), timeout=WAIT_MS)

    message = failures[1]
    assert f"expected {wrong}" in message and server.sha256 in message and "nothing was saved" in message
    assert str(hub / FILENAME) in message  # where it would have gone
    assert files_in(hub) == [] and loaded_from == []
    assert chooser.predictor is None and chooser.failure == message
    assert chooser.problem.isVisibleTo(chooser) and not chooser.pick_button.isVisibleTo(chooser)
    assert log[-1][1] == "error" and "SHA-256" in log[-1][0]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def window(qtbot, qt_settings: AppSettings):  # type: ignore[no-untyped-def]
    from alexgui.qt.explorer import install_explorer
    from alexgui.qt.main_window import MainWindow

    w = MainWindow(qt_settings, devices=[("cpu", "CPU")])
    install_explorer(w)
    qtbot.addWidget(w)
    w.resize(1280, 800)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.explorer.shutdown()


def test_offline_says_what_to_do_without_widening_the_window_then_the_file_picked_by_hand_loads(  # type: ignore[no-untyped-def]
    qtbot, window, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: Server, hub: Path, loaded_from: list[Path]
) -> None:
    unreachable = f"http://127.0.0.1:{_closed_port()}/{FILENAME}"  # connection refused
    entry = use_registry(tmp_path, monkeypatch, unreachable, server.sha256, len(server.payload))
    answer_yes(monkeypatch)
    explorer = window.explorer
    explorer.docks["classify"].raise_()
    chooser: ModelChooser = explorer.classify.chooser
    qtbot.waitUntil(chooser.isVisible, timeout=WAIT_MS)
    width = window.width()
    failures: list[str] = []
    chooser.loadFailed.connect(failures.append)
    chooser.torchvision_action.trigger()
    qtbot.waitUntil(lambda: len(failures) == 2 and not chooser.is_loading(), timeout=WAIT_MS)
    qtbot.wait(100)  # let any layout request reach the window

    message = failures[1]
    assert "could not be downloaded" in message and "cannot reach" in message
    assert unreachable in message and str(entry.hub_path) in message  # what to fetch, where to put it
    assert chooser.problem.isVisible() and chooser.problem.wordWrap() and chooser.pick_button.isVisible()
    assert chooser.problem.width() <= chooser.width()
    assert window.width() == width and window.minimumSizeHint().width() <= width  # (the screen may be under 1280)
    assert files_in(hub) == []
    assert "Model not loaded" in window.log.text()

    # The weights file the user has: picked by hand, it loads (and the message goes).
    mine = tmp_path / "downloads" / FILENAME
    mine.parent.mkdir()
    mine.write_bytes(server.payload)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args, **kwargs: (str(mine), ""))
    with qtbot.waitSignal(chooser.predictorChanged, timeout=WAIT_MS):
        qtbot.mouseClick(chooser.pick_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not chooser.is_loading(), timeout=WAIT_MS)
    assert loaded_from == [mine] and chooser.predictor is not None and chooser.predictor.source == str(mine)
    assert not chooser.problem.isVisible() and not chooser.pick_button.isVisible()
    assert explorer.retrieval.chooser.label.text() == chooser.label.text()  # every panel names the same model
    assert "Model loaded in" in window.log.text() and str(mine) in window.log.text()
    assert window.width() == width


def test_cancel_keeps_no_partial_file_and_the_model_as_it_was(  # type: ignore[no-untyped-def]
    qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: Server, hub: Path, loaded_from: list[Path]
) -> None:
    use_registry(tmp_path, monkeypatch, server.url, server.sha256, len(server.payload))
    server.gated = True  # the server holds the file after its first megabyte
    answer_yes(monkeypatch)
    chooser, log = shown_chooser(qtbot)
    before = MeanColourPredictor()
    chooser.set_predictor(before)
    shown = record_progress(chooser, monkeypatch)
    failures: list[str] = []
    chooser.loadFailed.connect(failures.append)
    chooser.torchvision_action.trigger()
    qtbot.waitUntil(lambda: any("1 / 3 MB" in text for text in shown), timeout=WAIT_MS)
    assert chooser.cancel_button.isVisible()
    qtbot.mouseClick(chooser.cancel_button, Qt.MouseButton.LeftButton)
    server.gate.set()  # the rest arrives; the job sees the stop before writing it
    qtbot.waitUntil(lambda: not chooser.is_loading(), timeout=WAIT_MS)

    assert files_in(hub) == []  # neither the file nor a temporary
    assert loaded_from == []
    assert len(failures) == 1 and "not on this computer" in failures[0]  # the first load's: a cancel is no error
    assert chooser.predictor is before and chooser.label.text().startswith(before.source)
    assert chooser.failure == "" and "cancelled" in chooser.problem.text()
    assert not chooser.progress.isVisible()
    assert log[-1] == (f"Download of {FILENAME} cancelled; nothing was saved", "info")
