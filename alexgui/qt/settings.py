"""What the desktop app remembers between launches, kept in QSettings (an ini file per user).

Window geometry and dock layout, recent datasets / runs / models, the runs folder, and the training
form's last values (as the same TOML a run directory keeps, so one parser reads both).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

from alexgui.config import ConfigError, RunConfig

ORGANIZATION = "alexgui"
APPLICATION = "alexgui"
RECENT_KINDS = ("dataset", "run", "model")
MAX_RECENT = 10


def default_runs_root() -> Path:
    return Path.home() / "alexgui-runs"


def open_settings(organization: str = ORGANIZATION, application: str = APPLICATION) -> QSettings:
    """The user's settings file; tests redirect it with QSettings.setPath and their own organisation."""
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, organization, application)


class AppSettings:
    """Typed access to the app's QSettings; every setter writes through at once."""

    def __init__(self, store: QSettings | None = None) -> None:
        self.store = store if store is not None else open_settings()

    @property
    def path(self) -> str:
        return self.store.fileName()

    # -- recent items -----------------------------------------------------------------------

    def recent(self, kind: str) -> list[str]:
        _check_kind(kind)
        value = self.store.value(f"recent/{kind}", [])
        # QSettings returns a bare string for a one-item list and None for an empty one in ini files.
        if value is None:
            return []
        if isinstance(value, str):
            return [value] if value else []
        return [str(v) for v in value if v]

    def add_recent(self, kind: str, path: str | Path) -> list[str]:
        items = [str(path)] + [p for p in self.recent(kind) if p != str(path)]
        items = items[:MAX_RECENT]
        self.store.setValue(f"recent/{kind}", items)
        return items

    def clear_recent(self) -> None:
        for kind in RECENT_KINDS:
            self.store.remove(f"recent/{kind}")

    # -- folders ----------------------------------------------------------------------------

    @property
    def runs_root(self) -> Path:
        value = self.store.value("paths/runs_root", "")
        return Path(str(value)) if value else default_runs_root()

    @runs_root.setter
    def runs_root(self, path: str | Path) -> None:
        self.store.setValue("paths/runs_root", str(path))

    # -- the training form ------------------------------------------------------------------

    @property
    def last_config(self) -> RunConfig | None:
        """The form's values when the app last closed, or None (first launch, or an unreadable entry)."""
        text = self.store.value("train/config_toml", "")
        if not text:
            return None
        try:
            return RunConfig.from_toml(str(text), f"{self.path} [train/config_toml]")
        except ConfigError:
            return None  # written by another version; the defaults are a fine fallback

    @last_config.setter
    def last_config(self, cfg: RunConfig) -> None:
        self.store.setValue("train/config_toml", cfg.to_toml())

    @property
    def preset(self) -> str:
        return str(self.store.value("train/preset", ""))

    @preset.setter
    def preset(self, name: str) -> None:
        self.store.setValue("train/preset", name)

    # -- window -----------------------------------------------------------------------------

    def window_state(self) -> tuple[QByteArray | None, QByteArray | None]:
        """(geometry, dock state) as saved by QMainWindow, or None for each one never saved."""
        geometry = self.store.value("window/geometry")
        state = self.store.value("window/state")
        return (
            geometry if isinstance(geometry, QByteArray) else None,
            state if isinstance(state, QByteArray) else None,
        )

    def set_window_state(self, geometry: QByteArray, state: QByteArray) -> None:
        self.store.setValue("window/geometry", geometry)
        self.store.setValue("window/state", state)

    def sync(self) -> None:
        self.store.sync()


def _check_kind(kind: str) -> None:
    if kind not in RECENT_KINDS:
        raise ValueError(f"unknown recent-item kind {kind!r}; expected one of {', '.join(RECENT_KINDS)}")
