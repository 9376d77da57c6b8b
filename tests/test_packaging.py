"""What a wheel carries besides the package: the files alexgui reads at run time outside a checkout."""

from __future__ import annotations

import tomllib
from pathlib import Path

from alexgui.paths import CHECKOUT, shipped

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_files_come_from_the_checkout_then_the_installed_share(tmp_path: Path) -> None:
    checkout, share = tmp_path / "checkout", tmp_path / "share"
    (share / "model_zoo").mkdir(parents=True)
    (share / "model_zoo" / "registry.json").write_text("{}")
    assert shipped("model_zoo/registry.json", (checkout, share)) == share / "model_zoo" / "registry.json"
    (checkout / "model_zoo").mkdir(parents=True)
    (checkout / "model_zoo" / "registry.json").write_text("{}")
    assert shipped("model_zoo/registry.json", (checkout, share)) == checkout / "model_zoo" / "registry.json"
    # Neither has it: the checkout's path, so that an error names the first place looked.
    assert shipped("resources/none.qss", (checkout, share)) == checkout / "resources" / "none.qss"
    assert CHECKOUT == ROOT


def test_the_wheel_installs_every_file_the_app_reads() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data_files = config["tool"]["setuptools"]["data-files"]
    installed = {}
    for target, patterns in data_files.items():
        for pattern in patterns:
            for path in ROOT.glob(pattern):
                installed[path.relative_to(ROOT).as_posix()] = Path(target) / path.name
    needed = ["resources/style.qss", "model_zoo/registry.json",
              *(p.relative_to(ROOT).as_posix() for p in (ROOT / "resources" / "icons").iterdir())]
    for relative in needed:
        assert relative in installed, f"{relative} is not in pyproject.toml's data-files"
        # installed where shipped() looks: <prefix>/share/alexgui/<the same relative path>
        assert installed[relative] == Path("share/alexgui") / relative
