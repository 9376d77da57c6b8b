"""The training presets are one definition (alexgui/presets.py), shared by the app's Recipe box and
`alexgui train --preset`: the same names, values and notes; flags override a preset, a preset overrides
--config; the demo data with no recipe given starts from the quick preset and says so in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

import alexgui.qt.presets as qt_presets
from alexgui import presets
from alexgui.cli import main
from alexgui.commands import train as train_command
from alexgui.config import RunConfig
from alexgui.presets import PAPER, PRESETS, QUICK, RECIPE_FIELDS
from tests.helpers import make_dataset

pytestmark = pytest.mark.timeout(120)


def _recipe(cfg: RunConfig) -> tuple[object, ...]:
    return tuple(getattr(cfg.train, name) for name in RECIPE_FIELDS)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[RunConfig]:
    """The settings `alexgui train` would train with: everything up to the first step runs (arguments,
    presets, the run folder), the training itself is replaced by recording its settings."""
    seen: list[RunConfig] = []

    def fake_train(cfg: RunConfig, run_dir: object, resume: bool, ctx: object) -> int:
        seen.append(cfg)
        return 0

    monkeypatch.setattr(train_command, "_train", fake_train)
    return seen


def test_the_app_and_the_command_line_share_one_definition() -> None:
    assert qt_presets.PRESETS is presets.PRESETS and qt_presets.matching is presets.matching
    assert [p.name for p in PRESETS] == ["quick", "paper", "photos"]
    assert presets.preset_named("demo") is QUICK and presets.preset_named("Paper") is PAPER
    assert presets.preset_named("nope") is None


def test_the_apps_box_lists_exactly_the_shared_presets_with_their_values(qtbot) -> None:
    from alexgui.qt.panels.monitor import TrainSettingsForm

    form = TrainSettingsForm([("cpu", "CPU")])
    qtbot.addWidget(form)
    items = [(form.preset.itemData(i), form.preset.itemText(i)) for i in range(form.preset.count())]
    assert items == [(p.name, p.label) for p in PRESETS] + [(presets.CUSTOM, "Custom")]
    for preset in PRESETS:
        form.preset.setCurrentIndex(form.preset.findData(preset.name))
        assert _recipe(form.config()) == pytest.approx(preset.values())
        assert form.preset_note.text() == preset.note
    assert _recipe(form.first_launch_config()) == QUICK.values()


@pytest.mark.parametrize("name", ["quick", "demo", "paper"])
def test_train_preset_gives_the_apps_values(name: str, tmp_path: Path, started: list[RunConfig], qtbot) -> None:
    from alexgui.qt.panels.monitor import TrainSettingsForm

    assert main(["train", "--out", str(tmp_path / "run"), "--preset", name]) == 0
    form = TrainSettingsForm([("cpu", "CPU")])
    qtbot.addWidget(form)
    form.preset.setCurrentIndex(form.preset.findData(presets.preset_named(name).name))  # type: ignore[union-attr]
    assert _recipe(started[0]) == pytest.approx(_recipe(form.config()))
    assert RunConfig.load(tmp_path / "run" / "config.toml").train.batch_size == form.config().train.batch_size


def test_flags_override_the_preset(tmp_path: Path, started: list[RunConfig]) -> None:
    assert main(["train", "--out", str(tmp_path / "r"), "--preset", "paper", "--lr", "0.02", "--epochs", "3"]) == 0
    cfg = started[0]
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr) == (3, 128, 0.02)
    assert (cfg.train.momentum, cfg.train.weight_decay) == (PAPER.momentum, PAPER.weight_decay)


def test_the_preset_overrides_config_and_flags_override_both(tmp_path: Path, started: list[RunConfig]) -> None:
    config = tmp_path / "settings.toml"
    config.write_text("[train]\nlr = 0.05\nepochs = 7\nseed = 11\nbatch_size = 64\n", encoding="utf-8")
    assert main(["train", "--out", str(tmp_path / "r"), "--config", str(config), "--preset", "quick", "--epochs", "4"]) == 0
    cfg = started[0]
    assert (cfg.train.lr, cfg.train.batch_size) == (QUICK.lr, QUICK.batch_size)  # the preset over the file
    assert cfg.train.epochs == 4  # the flag over both
    assert cfg.train.seed == 11  # what the preset does not set: the file's


def test_demo_data_alone_uses_the_quick_preset_and_says_so(
    tmp_path: Path, started: list[RunConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["--data", "demo"], []):
        assert main(["train", "--out", str(tmp_path / f"r{len(argv)}"), *argv]) == 0
        assert _recipe(started[-1]) == QUICK.values()
        lines = [line for line in capsys.readouterr().out.splitlines() if "preset" in line]
        assert len(lines) == 1 and "quick preset" in lines[0] and "--preset paper" in lines[0], lines
    # A flag on top of it changes only itself.
    assert main(["train", "--out", str(tmp_path / "r9"), "--data", "demo", "--epochs", "2"]) == 0
    assert _recipe(started[-1]) == (2, *QUICK.values()[1:])


def test_a_real_folder_keeps_the_papers_recipe(
    tmp_path: Path, started: list[RunConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_dataset(tmp_path / "data")
    assert main(["train", "--out", str(tmp_path / "r"), "--data", str(data)]) == 0
    assert _recipe(started[0]) == PAPER.values() == _recipe(RunConfig())
    assert "preset" not in capsys.readouterr().out


def test_a_fine_tune_with_no_preset_takes_the_photos_recipe_and_says_so(
    tmp_path: Path, started: list[RunConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    """--init alone took the paper's lr 0.01 and 90 epochs, and a new last layer's loss went from 1.3 to 24."""
    from tests.finetune_helpers import make_source_run

    source = make_source_run(tmp_path / "source")
    data = make_dataset(tmp_path / "data")
    photos = presets.preset_named("photos")
    assert main(["train", "--out", str(tmp_path / "r"), "--data", str(data), "--init", str(source)]) == 0
    cfg = started[-1]
    assert _recipe(cfg) == photos.values() and cfg.train.lr == 0.001
    assert cfg.train.init == str(source.resolve()) and cfg.train.finetune == "all"  # where to start: as given
    lines = [line for line in capsys.readouterr().out.splitlines() if "preset" in line]
    assert len(lines) == 1 and "photos preset's recipe" in lines[0] and "--preset paper" in lines[0], lines
    assert main(["train", "--out", str(tmp_path / "r2"), "--data", str(data), "--init", str(source),
                 "--finetune", "head", "--preset", "paper"]) == 0
    assert _recipe(started[-1]) == PAPER.values() and started[-1].train.finetune == "head"


def test_a_config_file_on_the_demo_data_is_not_replaced_by_a_preset(tmp_path: Path, started: list[RunConfig]) -> None:
    config = tmp_path / "settings.toml"
    config.write_text('[data]\ndata = "demo"\n[train]\nepochs = 5\n', encoding="utf-8")
    assert main(["train", "--out", str(tmp_path / "r"), "--config", str(config)]) == 0
    assert _recipe(started[0]) == (5, *PAPER.values()[1:])


def test_a_bad_preset_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--out", str(tmp_path / "r"), "--preset", "fast"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "argument --preset: 'fast' is not a preset; give one of quick, paper, photos, demo" in lines[0]
    assert captured.out == "" and not (tmp_path / "r").exists()


def test_help_lists_the_presets_and_what_they_change(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # unwrapped
    for preset in PRESETS:
        assert f"{preset.name}" in text and preset.label in text and " ".join(preset.note.split()) in text
    assert "flags over --preset over --config" in text
