"""Known pretrained models (model_zoo/registry.json) and getting their weights onto this machine.

The registry carries everything the app needs at runtime (source address, SHA-256, size,
architecture, preprocessing, the 1000 ImageNet class names and WordNet ids), so no torchvision
metadata is needed to use torchvision's weights.

Weights are looked for in torch's hub cache (where torchvision itself keeps them, so a copy
downloaded by either is shared), verified by SHA-256, and downloaded when asked: in chunks, with a
progress callback, cancellable, written atomically (a cancelled or failed download leaves nothing
behind), and refused when the checksum does not match. Without a network the error says exactly
which file to fetch elsewhere and where to put it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from alexgui.engine.store.atomic import atomic_open
from alexgui.errors import AlexguiError, Cancelled
from alexgui.paths import shipped

REGISTRY_PATH = shipped("model_zoo/registry.json")
DEFAULT_MODEL = "torchvision-alexnet"
ALIASES = frozenset({"torchvision", "torchvision-alexnet"})
CHUNK = 1 << 20

Progress = Callable[[int, int], None]  # (bytes done, bytes total; 0 when unknown)


class ZooError(AlexguiError):
    """A registry, download or weights-file problem; the message says what to do."""


class OfflineError(ZooError):
    """The weights are not here and the source cannot be reached."""


class ChecksumError(ZooError):
    """A file whose SHA-256 is not the registry's."""


class DownloadCancelled(ZooError, Cancelled):
    """The user stopped a download; nothing was written."""


@dataclass
class ZooEntry:
    name: str
    arch: str
    url: str
    filename: str
    sha256: str
    bytes: int
    title: str = ""
    aliases: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    wnids: list[str] | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)

    @property
    def hub_path(self) -> Path:
        """Where torch.hub (and torchvision) keep this file."""
        return hub_checkpoints_dir() / self.filename


def hub_checkpoints_dir() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


@lru_cache(maxsize=4)
def load_registry(path: Path = REGISTRY_PATH) -> dict[str, ZooEntry]:
    """name -> entry, from the registry JSON. Raises ZooError naming the file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ZooError(f"{path}: cannot read the model registry ({e.strerror or e})") from None
    except json.JSONDecodeError as e:
        raise ZooError(f"{path}: the model registry is not valid JSON ({e})") from None
    entries: dict[str, ZooEntry] = {}
    for raw in data.get("models", []):
        try:
            entry = ZooEntry(
                name=raw["name"],
                arch=raw["arch"],
                url=raw["url"],
                filename=raw["filename"],
                sha256=raw["sha256"].lower(),
                bytes=int(raw["bytes"]),
                title=raw.get("title", ""),
                aliases=list(raw.get("aliases", [])),
                categories=list(raw.get("categories", [])),
                wnids=list(raw["wnids"]) if raw.get("wnids") else None,
                preprocessing=dict(raw.get("preprocessing", {})),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ZooError(f"{path}: bad registry entry {raw.get('name', '?')!r} ({e!r})") from None
        entries[entry.name] = entry
    return entries


def default_entry() -> ZooEntry:
    # REGISTRY_PATH is read at call time (not bound as a default argument), so a test can point the
    # whole app at a registry of its own, e.g. one whose source is a local HTTP server.
    return load_registry(REGISTRY_PATH)[DEFAULT_MODEL]


def imagenet_names() -> dict[str, str]:
    """ImageNet WordNet id -> class name ("n02096294" -> "Australian terrier"), from the registry;
    empty when the registry cannot be read (names are a courtesy: never an error)."""
    return _imagenet_names(REGISTRY_PATH)


@lru_cache(maxsize=4)
def _imagenet_names(path: Path) -> dict[str, str]:
    try:
        entry = load_registry(path)[DEFAULT_MODEL]
    except (ZooError, KeyError):
        return {}
    if not entry.wnids or len(entry.wnids) != len(entry.categories):
        return {}
    return dict(zip(entry.wnids, entry.categories))


def readable_class(name: str) -> str:
    """A class name as people read it: an ImageNet WordNet id gets its name ("Australian terrier
    (n02096294)"), any other name is returned as it is. A model trained on an ImageNet-style folder
    has the wnids themselves as class names."""
    wnid = name.strip().lower()
    readable = imagenet_names().get(wnid) if len(wnid) == 9 and wnid.startswith("n") else None
    return f"{readable} ({wnid})" if readable else name


def sha256_file(path: Path, stop: threading.Event | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            if stop is not None and stop.is_set():
                raise DownloadCancelled(f"{path}: checksum cancelled")
            h.update(chunk)
    return h.hexdigest()


_verified: dict[tuple[str, int, int], str] = {}


def verify_file(path: str | os.PathLike[str], sha256: str) -> None:
    """Raise ChecksumError unless the file's SHA-256 is `sha256` (cached per path, size and mtime)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        raise ZooError(f"{p}: cannot read ({e.strerror or e})") from None
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    digest = _verified.get(key) or sha256_file(p)
    if digest != sha256.lower():
        raise ChecksumError(
            f"{p}: SHA-256 is {digest}, expected {sha256} — the file is damaged or not the expected "
            "weights; delete it and download again"
        )
    _verified[key] = digest


def offline_help(entry: ZooEntry, reason: str = "") -> str:
    why = f" ({reason})" if reason else ""
    return (
        f"{entry.title or entry.name}: the weights file is not on this computer and could not be downloaded"
        f"{why}.\n"
        f"On a computer with internet, download\n  {entry.url}\n"
        f"({entry.bytes / 1e6:.0f} MB, SHA-256 {entry.sha256}) and copy it to\n  {entry.hub_path}\n"
        f"or choose the file yourself: in the app, Classify > Model > 'torchvision weights file…'; on the command "
        f"line, its path as --init (train) or --model (classify, evaluate, explain, export)."
    )


def find_weights(entry: ZooEntry) -> Path | None:
    """The weights file when it is already on this machine."""
    path = entry.hub_path
    return path if path.is_file() else None


def ensure_weights(
    entry: ZooEntry,
    allow_download: bool = False,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> Path:
    """A verified local copy of the entry's weights, downloading it when allowed and needed."""
    found = find_weights(entry)
    if found is not None:
        verify_file(found, entry.sha256)
        return found
    if not allow_download:
        raise OfflineError(offline_help(entry, "downloading was not requested"))
    try:
        return download(entry.url, entry.hub_path, entry.sha256, progress=progress, stop=stop, expected_bytes=entry.bytes)
    except OfflineError as e:
        raise OfflineError(offline_help(entry, str(e))) from None


def download(
    url: str,
    dest: str | os.PathLike[str],
    sha256: str | None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    expected_bytes: int = 0,
    timeout: float = 30.0,
) -> Path:
    """Fetch `url` to `dest` (atomic: a temporary file renamed only after the checksum matched).

    Raises OfflineError when the source cannot be reached, ChecksumError on a mismatch,
    DownloadCancelled when `stop` is set; in every failure `dest` is left as it was.
    """
    dest = Path(dest)
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise OfflineError(f"cannot reach {url}: {getattr(e, 'reason', e)}") from None
    h = hashlib.sha256()
    with response:
        total = int(response.headers.get("Content-Length") or 0) or expected_bytes
        done = 0
        try:
            with atomic_open(dest, "wb") as f:
                while True:
                    if stop is not None and stop.is_set():
                        raise DownloadCancelled(f"download of {url} cancelled after {done} bytes")
                    try:
                        chunk = response.read(CHUNK)
                    except OSError as e:
                        raise OfflineError(f"connection to {url} lost after {done} bytes ({e})") from None
                    if not chunk:
                        break
                    f.write(chunk)
                    h.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
                digest = h.hexdigest()
                if sha256 is not None and digest != sha256.lower():
                    raise ChecksumError(
                        f"{url}: downloaded {done} bytes with SHA-256 {digest}, expected {sha256}; "
                        f"nothing was saved to {dest}"
                    )
        except OSError as e:
            raise ZooError(f"{dest}: cannot write ({e.strerror or e})") from None
    st = dest.stat()
    _verified[(str(dest.resolve()), st.st_size, st.st_mtime_ns)] = digest
    return dest
