"""Walking a dataset's folders without being fooled: links, loops, special files and odd names.

What a user's folder may hold, and what the walk does with it:

- regular files: candidates for the pre-flight (which decodes them), each with its stat stamp;
- named pipes, sockets and devices: skipped with a reason, never opened (opening a FIFO for reading
  waits for a writer forever);
- symbolic links: followed only after every real entry of the class is taken (real entries always
  win), and only when they lead below their own class folder, or out of the root when the caller
  allows links out; a link into another class (`cats/more -> ../dogs/sub`, `cats/x.png ->
  ../dogs/0.png`) or elsewhere into the root is skipped with a reason instead of labelling those
  images as this class; a folder is visited once, by its (st_dev, st_ino), so a link to `..` or to
  the class folder itself is skipped too instead of repeating the images below it; a file reached
  twice (a link or a hard link) is used once;
- names that are not valid UTF-8 (POSIX bytes, held by Python as surrogate escapes): files are used,
  class folders are skipped (a class name is text written into checkpoints and exported models).

Every skip is a `Skipped(path, reason)` whose path is printable (`display_path`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from alexgui.errors import AlexguiError

# (size, mtime_ns, inode): what "the same file" means between the pre-flight and a later epoch.
Stamp = tuple[int, int, int]


class DatasetError(AlexguiError):
    """A dataset folder that cannot be trained on; the message names the folder and the problem."""


@dataclass
class Skipped:
    path: str  # printable: a name that is not valid UTF-8 shows its bytes as \xNN
    reason: str


def display_path(path: str | os.PathLike[str] | bytes) -> str:
    """`path` as text that can be printed and written as UTF-8: undecodable bytes become \\xNN."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        return text.decode("utf-8", "backslashreplace")
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:  # surrogate escapes stand for the name's raw bytes (os.fsdecode on POSIX)
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # other lone surrogates (a broken UTF-16 name on Windows)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def is_valid_text(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def special_file_reason(mode: int) -> str | None:
    """Why a file of this st_mode is not opened, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder, not an image file"
    kinds = (
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    kind = next((text for test, text in kinds if test(mode)), "a special file")
    return f"{kind}, not a regular file; not opened"


@dataclass
class FolderWalk:
    """One walk over a dataset's root: remembers every folder and file it has taken, across classes.

    Use `class_folders` on each folder of class folders (root, or train/ and val/) before
    `files_below` on any class, so a link from one class into another class's folder is recognised
    as such whichever class comes first.
    """

    root: Path  # resolved
    links_out: bool = False  # follow symbolic links that lead out of root
    skipped: list[Skipped] = field(default_factory=list, init=False)
    stamps: dict[str, Stamp] = field(default_factory=dict, init=False)  # every file taken, as found
    _dirs: dict[tuple[int, int], str] = field(default_factory=dict, init=False)  # (st_dev, st_ino) -> path taken
    _files: dict[tuple[int, int], str] = field(default_factory=dict, init=False)
    _classes: list[tuple[str, Path]] = field(default_factory=list, init=False)  # (name for messages, resolved folder)

    def __post_init__(self) -> None:
        self._claim_dir(self.root, str(self.root))

    def class_folders(self, folder: Path) -> list[tuple[str, Path]]:
        """(class name, folder) for the visible sub-folders of `folder`, sorted by name.

        Real folders are taken before links, so a class folder that is a link into another class
        (`kittens -> cats/small`) cannot take that class's images away from it.
        """
        self._claim_dir(folder, str(folder))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            raise DatasetError(f"{folder}: cannot list the folder ({e.strerror or e})") from None
        visible = [e for e in entries if not e.name.startswith(".")]
        found: list[tuple[str, Path]] = []
        for entry in [e for e in visible if not e.is_symlink()] + [e for e in visible if e.is_symlink()]:
            st = self._follow(entry)
            if st is None or not stat.S_ISDIR(st.st_mode):
                continue  # files next to the class folders are not in any class
            if not is_valid_text(entry.name):
                self.skip(entry.path, "class folder name is not valid UTF-8 (class names are text); rename it")
                continue
            taken = self._dirs.get((st.st_dev, st.st_ino))
            if taken is not None:
                self.skip(entry.path, f"the same folder as {display_path(taken)}; used once")
                continue
            real = Path(os.path.realpath(entry.path))
            other = self._class_holding(real, None)
            if entry.is_symlink() and other is not None:
                self.skip(entry.path, f"link into another class ({other}); not followed")
                continue
            self._dirs[(st.st_dev, st.st_ino)] = entry.path
            self._classes.append((display_path(os.path.relpath(entry.path, self.root)), real))
            found.append((entry.name, Path(entry.path)))
        return sorted(found)

    def files_below(self, folder: Path) -> list[str]:
        """Sorted paths of the regular files below a class folder (hidden names ignored).

        Links are followed only after every real entry below the class is taken (real entries win:
        a link never claims a folder or file that is really there), and only when they lead below
        this class folder (or out of the root, when allowed): a link elsewhere into the root would
        label another class's images, or images that are in no class, as this class.
        """
        class_root = Path(os.path.realpath(folder))
        found: list[str] = []
        pending = [str(folder)]
        links: list[os.DirEntry[str]] = []
        while pending or links:
            if not pending:
                self._take_link(links.pop(0), class_root, pending, found)
                continue
            current = pending.pop()
            try:
                entries = sorted(os.scandir(current), key=lambda e: e.name)
            except OSError as e:
                self.skip(current, f"cannot list the folder ({e.strerror or e})")
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_symlink():
                    links.append(entry)
                    continue
                st = self._follow(entry)
                if st is not None:
                    self._take(entry.path, st, pending, found)
        return sorted(found)

    def _take_link(self, entry: os.DirEntry[str], class_root: Path, pending: list[str], found: list[str]) -> None:
        st = self._follow(entry)
        if st is None:
            return
        target = Path(os.path.realpath(entry.path))
        outside = not target.is_relative_to(class_root)
        other = self._class_holding(target, class_root) if outside else None
        if other is not None:  # its images are that class's, whichever class is walked first
            self.skip(entry.path, f"link into another class ({other}); not followed")
            return
        taken = self._dirs.get((st.st_dev, st.st_ino)) if stat.S_ISDIR(st.st_mode) else None
        if taken is not None:  # a link to an ancestor, to itself or to a folder taken before
            self.skip(entry.path, f"link to {display_path(taken)}, a folder already included; not followed")
            return
        if outside:
            if target.is_relative_to(self.root):
                self.skip(entry.path, f"link to {display_path(target)}, outside its class folder; not followed")
                return
        self._take(entry.path, st, pending, found)

    def _take(self, path: str, st: os.stat_result, pending: list[str], found: list[str]) -> None:
        key = (st.st_dev, st.st_ino)
        if stat.S_ISDIR(st.st_mode):
            taken = self._dirs.get(key)
            if taken is not None:
                self.skip(path, f"the same folder as {display_path(taken)}; used once")
                return
            self._dirs[key] = path
            pending.append(path)
            return
        reason = special_file_reason(st.st_mode)
        if reason is not None:
            self.skip(path, reason)
            return
        taken = self._files.get(key)
        if taken is not None:
            self.skip(path, f"the same file as {display_path(taken)}; used once")
            return
        self._files[key] = path
        self.stamps[path] = (st.st_size, st.st_mtime_ns, st.st_ino)
        found.append(path)

    def _class_holding(self, target: Path, own: Path | None) -> str | None:
        """The name (relative to the root) of the class folder other than `own` that holds `target`."""
        for name, real in self._classes:
            if real != own and target.is_relative_to(real):
                return name
        return None

    def _follow(self, entry: os.DirEntry[str]) -> os.stat_result | None:
        """The stat of what `entry` names, following a link only where allowed; None when skipped."""
        try:
            if not entry.is_symlink():
                return entry.stat(follow_symlinks=False)
            target = Path(os.path.realpath(entry.path))
            if not self.links_out and not target.is_relative_to(self.root):
                self.skip(entry.path, f"symbolic link out of the dataset folder (to {display_path(target)}); not followed")
                return None
            return os.stat(entry.path)
        except OSError as e:
            if entry.is_symlink():
                self.skip(entry.path, f"broken symbolic link ({e.strerror or e})")
            else:
                self.skip(entry.path, f"unreadable ({e.strerror or e})")
            return None

    def _claim_dir(self, folder: Path, path: str) -> None:
        try:
            st = os.stat(folder)
        except OSError:
            return
        self._dirs.setdefault((st.st_dev, st.st_ino), path)

    def skip(self, path: str, reason: str) -> None:
        """Leave `path` out of the dataset, with the reason the pre-flight report gives."""
        self.skipped.append(Skipped(display_path(path), reason))
