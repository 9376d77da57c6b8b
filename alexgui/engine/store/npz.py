"""Reading .npz files we wrote (filter snapshots, top-units passes, maps) without trusting them.

np.load(allow_pickle=False) never runs code, but a damaged file fails in many ways: OSError, ValueError
(not an npz, a pickled array), KeyError (a missing array), EOFError (an empty file), zipfile.BadZipFile
(truncated, a bad CRC). `read_npz` turns every one of them into NpzError with the reason, so callers
catch one thing and a damaged cache is recomputed rather than ending the program.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence

import numpy as np


class NpzError(ValueError):
    """The file could not be read as the .npz asked for; str() is the reason."""


def read_npz(path: str | os.PathLike[str], names: Sequence[str], optional: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The named arrays of an .npz file, copied out of it (the file is closed on return); `optional`
    ones only when present. Raises FileNotFoundError when the file is gone, NpzError otherwise."""
    try:
        # Our own file object, closed whatever happens: np.load leaks its handle when the zip is damaged.
        with open(path, "rb") as f:
            data = np.load(f, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise NpzError("a single array, not an .npz archive")
            with data:
                out = {name: np.array(data[name]) for name in names}
                out.update({name: np.array(data[name]) for name in optional if name in data.files})
                return out
    except (FileNotFoundError, NpzError):
        raise
    except KeyError as e:
        raise NpzError(f"no array {e} in it") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise NpzError(str(e) or type(e).__name__) from None
