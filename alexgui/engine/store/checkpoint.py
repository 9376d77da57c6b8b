"""Checkpoints: one .safetensors file of named tensors plus JSON metadata, written atomically.

safetensors stores raw tensor bytes and a JSON header, so loading one cannot run code by
construction. For weights from elsewhere (.pt/.pth/.bin, e.g. torchvision's state_dict files)
torch.load runs with weights_only=True, which refuses any pickle that would import or call
something, and on top of that only a flat name -> tensor dict is accepted.

Tensor names are prefixed by what they belong to (`model.`, `optim.`, `stats.`); `split_prefix`
takes one part back out. The metadata (`meta`) travels in the safetensors header under the key
"alexgui" as a JSON string, because header metadata must be str -> str.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
from safetensors import safe_open

from alexgui.engine.store.atomic import atomic_open
from alexgui.errors import AlexguiError

META_KEY = "alexgui"
FINGERPRINT_LENGTH = 16

_ZIP_MAGIC = b"PK\x03\x04"
_TORCH_SUFFIXES = (".pt", ".pth", ".bin")
_SAFETENSORS_DTYPE = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
    torch.uint16: "U16",
    torch.uint32: "U32",
    torch.uint64: "U64",
    torch.complex64: "C64",
}
# A sane upper bound for a safetensors JSON header; anything larger is not one of ours or is garbage.
_MAX_HEADER = 100 * 1024 * 1024


class CheckpointError(AlexguiError):
    """A checkpoint that cannot be written or read; str() names the file and the problem."""

    path: str

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem

    def __reduce__(self) -> tuple[type[CheckpointError], tuple[str, str]]:
        return (type(self), (self.path, self.problem))


@dataclass
class Checkpoint:
    path: Path
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)

    def part(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors under `prefix` (e.g. "model."), with the prefix removed."""
        return split_prefix(self.tensors, prefix)


def split_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Keep the entries whose name starts with `prefix`, renamed without it."""
    return {name[len(prefix) :]: t for name, t in tensors.items() if name.startswith(prefix)}


def save_checkpoint(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write `tensors` and `meta` to one .safetensors file; the old file survives any failure."""
    path = Path(path)
    try:
        meta_json = json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise CheckpointError(path, f"cannot save: the metadata is not JSON-serialisable ({e})") from None
    if sys.byteorder != "little":
        raise CheckpointError(path, "cannot save: safetensors files are little-endian and this machine is not")
    prepared = _prepare_for_save(path, tensors)
    try:
        with atomic_open(path, "wb") as f:
            _write_safetensors(f, prepared, {META_KEY: meta_json, "format": "pt"})
    except OSError as e:
        raise CheckpointError(path, f"cannot write ({e.strerror or e})") from None


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Checkpoint:
    """Read a .safetensors checkpoint, or a plain state_dict saved by torch.save; never runs code.

    A safetensors file without alexgui metadata loads with meta == {}; the caller decides whether
    that is acceptable. Raises CheckpointError naming the file and the problem.
    """
    path = Path(path)
    head = _read_head(path)
    if head.startswith(_ZIP_MAGIC) or _looks_like_pickle(head):
        tensors = _load_torch(path, device)
        return Checkpoint(path, tensors, {})
    size = path.stat().st_size
    problem = _safetensors_header_problem(head, size)
    if problem is None:
        return _load_safetensors(path, device)
    if path.suffix.lower() == ".safetensors":
        raise CheckpointError(path, f"not a valid safetensors file ({problem})")
    if path.suffix.lower() in _TORCH_SUFFIXES:
        raise CheckpointError(path, "not a PyTorch checkpoint (it is neither a zip archive nor a pickle stream)")
    raise CheckpointError(path, f"not a checkpoint: neither safetensors nor a PyTorch file{_describe_start(head)}")


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Only the alexgui metadata of a .safetensors checkpoint: reads the header, not the tensors.

    Cheap enough to list many checkpoints; load_checkpoint is what verifies the tensor data.
    """
    path = Path(path)
    head = _read_head(path)
    problem = _safetensors_header_problem(head, path.stat().st_size)
    if problem is not None:
        raise CheckpointError(path, f"not a valid safetensors file ({problem})")
    (header_len,) = struct.unpack("<Q", head[:8])
    try:
        with open(path, "rb") as f:
            f.seek(8)
            header = json.loads(f.read(header_len))
    except OSError as e:
        raise CheckpointError(path, f"cannot read ({e.strerror or e})") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(path, "not a valid safetensors file (the header is not JSON)") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return _parse_meta(path, metadata if isinstance(metadata, dict) else {})


def sha256_of_tensors(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the sorted names, dtypes, shapes and bytes: equal weights give equal digests."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach()
        header = f"{name}\0{str(t.dtype).removeprefix('torch.')}\0{tuple(t.shape)}\0"
        h.update(header.encode("utf-8"))
        flat = t.to("cpu").contiguous().reshape(-1)
        if flat.numel():
            # A uint8 view gives the raw bytes of any dtype, bfloat16 included (numpy lacks it).
            h.update(flat.view(torch.uint8).numpy().data)
    return h.hexdigest()


def weights_fingerprint(state_dict: dict[str, torch.Tensor]) -> str:
    """A short hex fingerprint of a set of weights, for stale-index checks and export stamps."""
    return sha256_of_tensors(state_dict)[:FINGERPRINT_LENGTH]


def _prepare_for_save(path: Path, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        if not isinstance(name, str):
            raise CheckpointError(path, f"cannot save: tensor name {name!r} is not a string")
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(path, f"cannot save: {name} is a {type(t).__name__}, not a tensor")
        if t.dtype not in _SAFETENSORS_DTYPE:
            raise CheckpointError(path, f"cannot save: {name} has dtype {t.dtype}, which safetensors cannot store")
        if t.layout != torch.strided:
            t = t.to_dense()
        out[name] = t.detach()
    return out


def _write_safetensors(f: IO[bytes], tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    # The safetensors layout, written tensor by tensor: no second copy of the checkpoint in memory,
    # and no shared-storage restriction (each tensor's bytes are written on their own).
    # safetensors' own save_file would also do, but it writes through a private temporary file of
    # its own (no fsync, mode 0600, debris named .tmpXXXXXX after a kill).
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        header[name] = {
            "dtype": _SAFETENSORS_DTYPE[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    header_bytes = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)  # the data starts 8-byte aligned, as safetensors does
    f.write(struct.pack("<Q", len(header_bytes)))
    f.write(header_bytes)
    for t in tensors.values():
        if t.numel():
            # One tensor at a time on the CPU; a uint8 view exposes the raw bytes of any dtype.
            flat = t.to("cpu").contiguous().reshape(-1).view(torch.uint8)
            f.write(flat.numpy().data)  # ndarray.data: a memoryview of the array's bytes


def _read_head(path: Path) -> bytes:
    try:
        if path.is_dir():
            raise CheckpointError(path, "is a folder, not a checkpoint file")
        with open(path, "rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        raise CheckpointError(path, "no such file") from None
    except OSError as e:
        raise CheckpointError(path, f"cannot read ({e.strerror or e})") from None
    if not head:
        raise CheckpointError(path, "empty file (0 bytes)")
    return head


def _looks_like_pickle(head: bytes) -> bool:
    # Legacy torch.save files and raw pickles start with PROTO (0x80) and a protocol number.
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _safetensors_header_problem(head: bytes, size: int) -> str | None:
    if len(head) < 9:
        return f"only {size} bytes, too short for a safetensors header"
    (header_len,) = struct.unpack("<Q", head[:8])
    if head[8:9] != b"{" or header_len < 2 or header_len > _MAX_HEADER:
        return "it does not start with a safetensors header"
    if 8 + header_len > size:
        return f"truncated: the header says {header_len} bytes but the file has {size - 8} after the length"
    return None


def _describe_start(head: bytes) -> str:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    if all(c.isprintable() or c.isspace() for c in text):
        return f" (it starts with text: {text.strip()[:16]!r})"
    return ""


def read_tensors(path: str | os.PathLike[str], keep: Callable[[str], bool]) -> dict[str, torch.Tensor]:
    """Only the tensors of a .safetensors checkpoint whose names `keep` accepts (conv1 for the filter
    history: 140 kB of a 700 MB file), read on the CPU; CheckpointError naming the file otherwise."""
    path = Path(path)
    head = _read_head(path)
    problem = _safetensors_header_problem(head, path.stat().st_size)
    if problem is not None:
        raise CheckpointError(path, f"not a valid safetensors file ({problem})")
    try:
        with safe_open(path, framework="pt", device="cpu", backend="pread") as f:
            return {name: f.get_tensor(name) for name in f.keys() if keep(name)}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error type, or OSError
        raise CheckpointError(path, f"not a readable safetensors file ({first_line(e)})") from None


def _load_safetensors(path: Path, device: str | torch.device) -> Checkpoint:
    try:
        # "pread" copies tensor bytes out of the file instead of memory-mapping it, so the file is
        # not held open (Windows could then not replace it) and a later truncation cannot crash us.
        with safe_open(path, framework="pt", device=str(device), backend="pread") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error type, OSError, or RuntimeError for devices
        raise CheckpointError(path, f"not a readable safetensors file ({first_line(e)})") from None
    return Checkpoint(path, tensors, _parse_meta(path, metadata))


def _parse_meta(path: Path, metadata: dict[str, str]) -> dict[str, Any]:
    if META_KEY not in metadata:
        return {}
    try:
        meta = json.loads(metadata[META_KEY])
    except json.JSONDecodeError as e:
        raise CheckpointError(path, f"the alexgui metadata in the header is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(path, "the alexgui metadata in the header is not a JSON object")
    return meta


def _load_torch(path: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    try:
        with warnings.catch_warnings():
            # Raised for pickles not written by torch.save; the restricted unpickler still applies.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            obj = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch.load's errors become a CheckpointError below
        message = str(e)
        if "Weights only load failed" in message:
            raise CheckpointError(
                path,
                "refused: the file contains a Python pickle payload beyond plain tensors "
                f"({_weights_only_reason(message)}). alexgui never runs code from a file; "
                "re-save the weights as a state_dict of tensors or as .safetensors",
            ) from None
        if isinstance(e, EOFError):
            raise CheckpointError(path, "not a readable PyTorch file (it ends early: truncated?)") from None
        raise CheckpointError(path, f"not a readable PyTorch file ({type(e).__name__}: {first_line(e)})") from None
    return _tensors_from_torch_object(path, obj)


def _tensors_from_torch_object(path: Path, obj: Any) -> dict[str, torch.Tensor]:
    # pytorch/examples' imagenet script saves {"state_dict": ..., "epoch": ..., "optimizer": ...}.
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(path, f"expected a dict of tensors (a state_dict), found a {type(obj).__name__}")
    bad = [str(k) for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        shown = ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise CheckpointError(path, f"expected a flat dict of name -> tensor (a state_dict); not tensors: {shown}")
    return dict(obj)


def _weights_only_reason(message: str) -> str:
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    for line in message.splitlines():
        line = line.strip()
        if line and not line.startswith(boilerplate):
            return line.rstrip(".")
    return "not allowed by torch.load(weights_only=True)"


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
