"""The model zoo: registry contents, downloads (local file:// and http://127.0.0.1), checksums,
cancellation, and what the user is told when offline (this project's CI has no network)."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from alexgui.engine.model import zoo


def test_registry_has_torchvision_alexnet_with_its_metadata() -> None:
    entry = zoo.default_entry()
    assert entry.arch == "torchvision"
    assert entry.url.endswith("/alexnet-owt-7be5be79.pth") and entry.filename == "alexnet-owt-7be5be79.pth"
    # torchvision checks only the 8-hex prefix in the file name; the full digest must agree with it.
    assert len(entry.sha256) == 64 and entry.sha256.startswith("7be5be79")
    assert len(entry.categories) == 1000 and entry.categories[0] == "tench"
    assert entry.wnids is not None and len(entry.wnids) == 1000
    assert entry.wnids == sorted(set(entry.wnids)) and entry.wnids[0] == "n01440764"
    assert entry.categories[entry.wnids.index("n02102040")] == "English springer"  # index 217
    assert set(zoo.ALIASES) <= set(entry.aliases)


@pytest.fixture
def payload(tmp_path: Path) -> tuple[Path, str]:
    src = tmp_path / "src" / "weights.bin"
    src.parent.mkdir()
    src.write_bytes(bytes(range(256)) * 9000)  # a bit over 2 chunks
    return src, hashlib.sha256(src.read_bytes()).hexdigest()


def test_download_from_a_file_url_verifies_and_reports_progress(tmp_path: Path, payload: tuple[Path, str]) -> None:
    src, digest = payload
    seen: list[tuple[int, int]] = []
    dest = zoo.download(src.as_uri(), tmp_path / "out" / "w.pth", digest, progress=lambda d, t: seen.append((d, t)))
    assert dest.read_bytes() == src.read_bytes()
    assert seen[-1] == (src.stat().st_size, src.stat().st_size)
    zoo.verify_file(dest, digest)


def test_a_wrong_checksum_leaves_nothing_behind(tmp_path: Path, payload: tuple[Path, str]) -> None:
    src, _ = payload
    out = tmp_path / "out"
    with pytest.raises(zoo.ChecksumError, match="expected 0000"):
        zoo.download(src.as_uri(), out / "w.pth", "0" * 64)
    assert list(out.iterdir()) == []


def test_a_cancelled_download_leaves_nothing_behind(tmp_path: Path, payload: tuple[Path, str]) -> None:
    src, digest = payload
    stop = threading.Event()
    out = tmp_path / "out"
    with pytest.raises(zoo.DownloadCancelled):
        zoo.download(src.as_uri(), out / "w.pth", digest, progress=lambda d, t: stop.set(), stop=stop)
    assert list(out.iterdir()) == []


@pytest.fixture
def http_server(payload: tuple[Path, str]) -> Iterator[str]:
    src, _ = payload

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(src.parent), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{src.name}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_download_over_http(tmp_path: Path, payload: tuple[Path, str], http_server: str) -> None:
    src, digest = payload
    totals: list[int] = []
    dest = zoo.download(http_server, tmp_path / "w.pth", digest, progress=lambda d, t: totals.append(t))
    assert dest.read_bytes() == src.read_bytes()
    assert set(totals) == {src.stat().st_size}  # the server's Content-Length


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_source_is_an_offline_error(tmp_path: Path) -> None:
    with pytest.raises(zoo.OfflineError, match="cannot reach"):
        zoo.download(f"http://127.0.0.1:{_closed_port()}/w.pth", tmp_path / "w.pth", None, timeout=5)
    assert not (tmp_path / "w.pth").exists()


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    hub = tmp_path / "hub"
    monkeypatch.setattr(zoo, "hub_checkpoints_dir", lambda: hub / "checkpoints")
    return hub / "checkpoints"


def test_offline_message_says_what_to_do(hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = zoo.default_entry()
    with pytest.raises(zoo.OfflineError) as info:
        zoo.ensure_weights(entry, allow_download=False)
    text = str(info.value)
    assert entry.url in text and entry.sha256 in text and str(hub_dir / entry.filename) in text
    unreachable = zoo.ZooEntry(**{**entry.__dict__, "url": f"http://127.0.0.1:{_closed_port()}/{entry.filename}"})
    with pytest.raises(zoo.OfflineError, match="could not be downloaded") as info:
        zoo.ensure_weights(unreachable, allow_download=True)
    assert "cannot reach" in str(info.value) and str(hub_dir / entry.filename) in str(info.value)


def test_ensure_weights_downloads_once_then_uses_the_cache(hub_dir: Path, payload: tuple[Path, str]) -> None:
    src, digest = payload
    entry = zoo.ZooEntry(name="t", arch="torchvision", url=src.as_uri(), filename="t.pth", sha256=digest,
                         bytes=src.stat().st_size)
    got = zoo.ensure_weights(entry, allow_download=True)
    assert got == hub_dir / "t.pth" and got.read_bytes() == src.read_bytes()
    src.unlink()  # the second call must not need the source
    assert zoo.ensure_weights(entry) == got
    got.write_bytes(b"damaged")
    with pytest.raises(zoo.ChecksumError, match="delete it and download again"):
        zoo.ensure_weights(entry)


def test_wordnet_ids_read_as_class_names() -> None:
    names = zoo.imagenet_names()
    assert len(names) == 1000 and names["n02096294"] == "Australian terrier"
    assert zoo.readable_class("n02086240") == "Shih-Tzu (n02086240)"
    assert zoo.readable_class("N02086240") == "Shih-Tzu (n02086240)"  # as folder names come
    assert zoo.readable_class("tabby") == "tabby"  # not a wnid: as it is
    assert zoo.readable_class("n99999999") == "n99999999"  # a wnid ImageNet-1k does not have


def test_the_registry_in_use_can_be_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              payload: tuple[Path, str], hub_dir: Path) -> None:
    """default_entry() reads zoo.REGISTRY_PATH when called: a registry of one's own (tests, a mirror)."""
    import json

    src, digest = payload
    data = json.loads(zoo.REGISTRY_PATH.read_text(encoding="utf-8"))
    data["models"][0].update(url=src.as_uri(), sha256=digest, bytes=src.stat().st_size, filename="mirror.pth")
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps(data), encoding="utf-8")
    monkeypatch.setattr(zoo, "REGISTRY_PATH", registry)
    entry = zoo.default_entry()
    assert entry.url == src.as_uri() and entry.filename == "mirror.pth"
    assert zoo.ensure_weights(entry, allow_download=True) == hub_dir / "mirror.pth"


def test_a_download_cancelled_over_http_leaves_nothing(tmp_path: Path, payload: tuple[Path, str], http_server: str) -> None:
    _, digest = payload
    stop = threading.Event()
    out = tmp_path / "out"
    with pytest.raises(zoo.DownloadCancelled) as raised:
        zoo.download(http_server, out / "w.pth", digest, progress=lambda d, t: stop.set(), stop=stop)
    assert isinstance(raised.value, zoo.Cancelled)  # a user's stop, not a failure
    assert list(out.iterdir()) == []
