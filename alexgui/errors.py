"""The one error family, at the bottom of the layers so that config.py, the engine, the command line and
the window all share it. Every error alexgui reports to its user derives from AlexguiError, so that a
front end can catch one type, show str(error) and carry on; a user stopping work raises Cancelled.

AlexguiError(problem) or AlexguiError(path, problem): str() is "PATH: problem" when there is a file,
else the problem; `.path` (None without a file) and `.problem` are there for a front end that wants to
show them apart. Subclasses say what went wrong (DatasetError, CheckpointError, ...), not how to
build the message.
"""

from __future__ import annotations

import os
from typing import Any


class AlexguiError(Exception):
    """A problem the user can act on; see the module docstring."""

    def __init__(self, *args: Any) -> None:
        if len(args) == 2 and args[0] is not None:
            self.path: str | None = os.fspath(args[0]) if isinstance(args[0], os.PathLike) else str(args[0])
            self.problem = str(args[1])
            super().__init__(self.path, self.problem)
        elif len(args) in (1, 2):
            self.path = None
            self.problem = str(args[-1])
            super().__init__(self.problem)
        else:
            raise TypeError(f"{type(self).__name__}(problem) or {type(self).__name__}(path, problem)")

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}" if self.path is not None else self.problem


class Cancelled(AlexguiError):
    """The user (or the caller's stop event) stopped the work before it finished; nothing half-done
    was left behind."""
