"""`alexgui train`: headless training with a progress bar, for servers with no display."""

from __future__ import annotations

import argparse
import copy
import io
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alexgui.commands.arguments import data_folder, devices, preset_name
from alexgui.config import ConfigError, RunConfig, check_setting
from alexgui.errors import AlexguiError
from alexgui.presets import ALIASES, PRESETS, QUICK, Preset, preset_named

if TYPE_CHECKING:  # the engine is imported when a run starts, not when the CLI parses its flags
    from alexgui.engine.store.rundir import RunDir
    from alexgui.engine.training.distributed import DistContext

# (flag, config section, field, type, help); a flag left out keeps the preset's, the config's or the paper's value.
_OVERRIDES: list[tuple[str, str, str, Any, str]] = [
    ("--arch", "model", "arch", str, "paper (two towers, default) or torchvision"),
    ("--activation", "model", "activation", str, "relu (default) or tanh"),
    ("--pooling", "model", "pooling", str, "overlapping (3/2, default) or non-overlapping (2/2)"),
    ("--dropout", "model", "dropout", float, "dropout rate in fc6 and fc7 (default 0.5)"),
    ("--lrn-formula", "model", "lrn_formula", str, "paper (default) or torch (alpha divided by n)"),
    ("--epochs", "train", "epochs", int, "passes over the training set (paper: 90)"),
    ("--max-steps", "train", "max_steps", int, "stop at this global optimizer step (0 = no limit)"),
    ("--batch-size", "train", "batch_size", int, "images per step (paper: 128)"),
    ("--lr", "train", "lr", float, "initial learning rate (paper: 0.01)"),
    ("--momentum", "train", "momentum", float, "SGD momentum (paper: 0.9)"),
    ("--weight-decay", "train", "weight_decay", float, "weight decay (paper: 0.0005)"),
    ("--conv1-init-std", "train", "conv1_init_std", float,
     "std of conv1's initial N(0, std) weights, paper network (paper: 0.01; quick preset: smaller)"),
    ("--conv1-lr-scale", "train", "conv1_lr_scale", float,
     "conv1's learning rate as a multiple of the other layers', paper network (paper: 1; quick preset: larger)"),
    ("--lr-patience", "train", "lr_patience", int, "epochs without val improvement before lr/10 (default 3)"),
    ("--lr-resolution", "train", "lr_resolution", float,
     "on a small validation set, wait until a fall of this much val error per epoch could show through its "
     "noise before lr/10 (default 0.01; 0 = the paper's rule as written)"),
    ("--device", "train", "device", devices,
     "auto (default: a CUDA GPU, else Apple's mps, else the CPU; resolved at each start, so a resumed run uses "
     "the machine it runs on), cpu, cuda, cuda:N, mps, or two devices (cuda:0,cuda:1) for one paper tower on each"),
    ("--seed", "train", "seed", int, "random seed (default 0)"),
    ("--log-every", "train", "log_every", int, "write a metrics line every N steps (default 1)"),
    ("--workers", "data", "workers", int, "decoding worker processes when the cache is off (default 2)"),
    ("--val-fraction", "data", "val_fraction", float, "held-out share when there is no val/ folder"),
    ("--pca-noise", "data", "pca_noise", float, "PCA colour noise std (default 0.1; 0 = off)"),
    ("--finetune", "train", "finetune", str,
     "with --init: head (only the new last layer learns), fc (fc6, fc7 and the last layer) or all (default; the "
     "pretrained layers at --pretrained-lr-scale times the rate)"),
    ("--pretrained-lr-scale", "train", "pretrained_lr_scale", float,
     "with --init and --finetune all: the pretrained layers' multiple of the learning rate (default 0.1)"),
]
_WIDTH = 78  # the description and the presets' notes are wrapped here (argparse keeps them as written)
_SWITCHES: list[tuple[str, str, str, bool, str]] = [
    ("--no-lrn", "model", "lrn", False, "turn local response normalisation off (ablation)"),
    ("--no-flip", "data", "flip", False, "no horizontal reflections"),
    ("--no-random-crop", "data", "random_crop", False, "train on the centre crop only"),
    ("--no-cache", "data", "cache", False, "decode images every epoch instead of caching them"),
    ("--follow-links", "data", "follow_links", True, "follow symbolic links that lead out of the data folder"),
    ("--ten-crop-eval", "data", "ten_crop_eval", True, "validate on 10 crops (paper's test-time averaging)"),
    ("--bf16", "train", "bf16", True,
     "bf16 autocast on CUDA and on CPUs with bf16 instructions (else fp32, said once); the app ticks it by "
     "default for CPU training on such CPUs, where it was measured faster and matching fp32"),
    ("--channels-last", "train", "channels_last", True, "channels_last memory format (CUDA only)"),
    ("--compile", "train", "compile", True, "torch.compile the model (CUDA mainly; the first steps are slow)"),
]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train AlexNet headless (the paper's recipe on a folder; the quick preset on the demo data)",
        description=textwrap.fill(
            "Train AlexNet on an image folder (one subfolder per class; train/ and val/ when present) or on "
            "the built-in demo data, writing a run directory the desktop app can open and follow.", _WIDTH),
        epilog=_presets_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", type=data_folder,
                   help="image folder, or 'demo' for the built-in generated dataset (default: demo)")
    p.add_argument("--out", required=True, type=Path, help="run directory to create (or to resume with --resume)")
    p.add_argument("--config", type=Path, help="TOML settings file (--preset and flags override it)")
    names = ", ".join([p.name for p in PRESETS] + [f"{alias} (= {name})" for alias, name in ALIASES.items()])
    p.add_argument("--preset", type=preset_name, default=None, metavar="NAME",
                   help=f"start from the app's recipe preset: {names} (below); flags given with it override it")
    p.add_argument("--init", metavar="SOURCE", default=None,
                   help="start from a trained network instead of random weights: torchvision (ImageNet weights from "
                   "the model zoo), a checkpoint file or a run folder (its best checkpoint); its architecture and "
                   "preprocessing are kept, the last layer is replaced for your classes (see --finetune)")
    p.add_argument("--download", action="store_true", help="with --init torchvision: download the weights when missing")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument(
        "--restart",
        action="store_true",
        help="start the alexgui run in --out over in the same folder: its checkpoints and log are cleared "
        "(settings: --config if given, else the run's config.toml; flags override them)",
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel training, one process per device (or GPU pair), launched by torchrun; "
        "--batch-size is per process; see docs/distributed.md",
    )
    for flag, _, _, kind, text in _OVERRIDES:
        p.add_argument(flag, type=kind, default=None, help=text)
    for flag, _, _, _, text in _SWITCHES:
        p.add_argument(flag, action="store_true", default=None, help=text)


def _presets_help() -> str:
    """The presets and what each changes from the paper, for `alexgui train --help` (the notes the app
    shows under its Preset box), and which settings win when several are given."""
    lines = ["presets (--preset NAME; the app's Recipe presets, one definition):"]
    for preset in PRESETS:
        aliases = [a for a, name in ALIASES.items() if name == preset.name]
        head = f"{preset.name}" + (f" (also: {', '.join(aliases)})" if aliases else "") + f": {preset.label}"
        lines.append(textwrap.fill(head, _WIDTH, initial_indent="  ", subsequent_indent="    "))
        lines.append(textwrap.fill(preset.note, _WIDTH, initial_indent="    ", subsequent_indent="    "))
    lines += [
        "",
        textwrap.fill(
            "Which settings win: flags over --preset over --config over the paper's defaults. On the demo data "
            "with neither --preset nor --config, the quick preset is the starting point, and for a fine-tune (--init) "
            "the photos preset's recipe (each said in one line); on an image folder the paper's recipe is. "
            "--resume and --restart start from the run's own settings.",
            _WIDTH,
        ),
    ]
    return "\n".join(lines)


def implicit_preset(args: argparse.Namespace) -> Preset | None:
    """The recipe a new run starts from unasked, with no --preset and no --config: the quick preset on the
    demo data (given or by default: the paper's 90 epochs at batch 128 are days of CPU time on it), and
    the photos preset's recipe for a fine-tune (--init): the paper's lr 0.01 is tuned for training 1000
    classes from random weights, and on a new last layer it overshoots (train loss 1.3 to 24 in a test).
    Only the recipe: --init and --finetune stay as given."""
    if getattr(args, "preset", None) is not None or args.config or args.resume or args.restart:
        return None
    if getattr(args, "init", None):
        return preset_named("photos")
    return QUICK if args.data is None or args.data == "demo" else None


def config_from_args(args: argparse.Namespace, base: RunConfig) -> RunConfig:
    """The settings `base` with --preset (if given) and then the flags given on top; ConfigError (naming
    the flag and the accepted values) for any value that cannot be used, before anything is created or
    read. (--data, --preset and --device were checked by their argparse types; the values `base` brings:
    _check_device_and_data.)"""
    preset = preset_named(args.preset) if getattr(args, "preset", None) else None
    values = (preset.apply(copy.deepcopy(base)) if preset else base).to_dict()  # a deep copy; validated as a whole below
    if args.data is not None:
        values["data"]["data"] = str(Path(args.data).expanduser().resolve()) if args.data != "demo" else "demo"
    init = getattr(args, "init", None)
    if init is not None:  # a path is kept absolute, as --data is: the run may be resumed from elsewhere
        values["train"]["init"] = init if init.strip().lower() in ("torchvision", "torchvision-alexnet", "") else \
            str(Path(init).expanduser().resolve())
    for flag, section, name, _, _ in _OVERRIDES:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            values[section][name] = check_setting(section, name, value, f"argument {flag}")
    for flag, section, name, on, _ in _SWITCHES:
        if getattr(args, flag[2:].replace("-", "_")):
            values[section][name] = on
    return RunConfig.from_dict(values, "command line")


def run(args: argparse.Namespace) -> int:
    try:
        prepared = _prepare(args)
    except AlexguiError as e:  # every argument is checked here, before any folder is made or file read
        print(f"alexgui train: {e}", file=sys.stderr)
        return 2
    if prepared is None:
        return 0
    cfg, run_dir = prepared
    if not args.distributed:
        assert run_dir is not None
        _say_device(cfg.train.device, distributed=False)
        return _train(cfg, run_dir, args.resume, None)
    return _run_distributed(args, cfg, run_dir)


def _first_process() -> bool:
    """Not one of torchrun's other ranks (which print nothing of their own: one line, not one per process)."""
    return os.environ.get("RANK", "0") == "0"


def _say_device(spec: str, distributed: bool) -> None:
    """One line naming the device "auto" picked (the run's config.toml keeps "auto", so that resuming on
    another machine picks again; its log's RunStarted names the device used)."""
    from alexgui.engine.devices import describe_auto

    line = describe_auto(spec, distributed)
    if line:
        print(f"alexgui train: {line}", flush=True)


def _prepare(args: argparse.Namespace) -> tuple[RunConfig, RunDir | None] | None:
    """The checked settings and the run folder, held as its one writer (distributed: rank 0 takes it
    once the processes have met); None when there is nothing to do."""
    from alexgui.engine.store.rundir import RunDir
    from alexgui.engine.training.checkpoints import check_resumable, saved_step

    if args.resume and args.restart:
        raise AlexguiError("argument --restart: not with --resume: give one (continue the run, or start it over)")
    if args.restart and args.distributed:
        raise AlexguiError("argument --restart: start the run over without --distributed, then resume it with --distributed")
    if args.resume and args.config:
        raise AlexguiError("argument --config: a resumed run keeps its own settings; give flags to change them")
    if not (args.resume or args.restart):
        base = RunConfig.load(args.config) if args.config else RunConfig()
        implied = implicit_preset(args)
        if implied is not None:
            init, finetune = base.train.init, base.train.finetune
            implied.apply(base)
            base.train.init, base.train.finetune = init, finetune  # the recipe only: the flags say where to start
        cfg = config_from_args(args, base)
        _check_device_and_data(cfg, args.config)
        _check_classes(cfg)  # before the source: a refused folder costs no download
        _check_init(args, cfg)
        if implied is not None and _first_process():  # said once every argument is known good
            print(_implied_line(implied))
        # Distributed: rank 0 creates the folder once the processes have met.
        return cfg, None if args.distributed else RunDir.create(args.out, cfg)
    # Every argument is checked against the run's settings, read without taking the run, before it is
    # claimed: claiming locks the folder, marks a run made before the marker and sweeps temporaries.
    run_dir = RunDir.open_ours(args.out)  # read only: nothing is taken before every flag is checked
    base = RunConfig.load(args.config) if args.config else run_dir.config()
    cfg = config_from_args(args, base)
    _check_device_and_data(cfg, args.config or run_dir.config_path)
    if not args.distributed:  # ranks other than 0 only read the folder; train() takes the lock on rank 0
        run_dir.claim()
        if not args.config and run_dir.config() != base:
            # A writer that ended between the read and the claim changed the settings: check them again.
            cfg = config_from_args(args, run_dir.config())
            _check_device_and_data(cfg, run_dir.config_path)
    if args.restart:
        run_dir.restart()
        return cfg, run_dir
    check_resumable(run_dir)
    step = saved_step(run_dir)
    if step is not None and cfg.train.max_steps and step >= cfg.train.max_steps:
        print(f"{args.out}: already at step {step}, which reaches --max-steps {cfg.train.max_steps}; nothing to do "
              "(give a larger --max-steps to train on)")  # fmt: skip
        return None
    return cfg, run_dir


def _implied_line(preset: Preset) -> str:
    why = "the demo data" if preset is QUICK else "a fine-tune (--init)"
    conv1 = f", conv1 initial std {preset.conv1_init_std:g}" if preset is QUICK else ""
    return (f"alexgui train: {why} with no --preset: the {preset.name} preset's recipe (batch {preset.batch_size}, "
            f"{preset.epochs} epochs, lr {preset.lr:g}{conv1}; flags override it); --preset paper for the paper's recipe")


def _check_init(args: argparse.Namespace, cfg: RunConfig) -> None:
    """A new fine-tuned run: its source loaded and checked, and the architecture and crop taken from it, before
    the run folder is made (a missing, damaged or unsuitable source leaves nothing behind)."""
    if not cfg.train.init:
        given = [flag for flag in ("--finetune", "--pretrained-lr-scale") if getattr(args, flag[2:].replace("-", "_"), None)]
        if given:
            raise ConfigError(f"argument {given[0]}: only with --init (a run from random weights trains every layer)")
        return
    from alexgui.commands.classify import stderr_progress
    from alexgui.engine.training.init_source import adopt_source, check_arch, resolve_init_source

    download = getattr(args, "download", False)
    source = resolve_init_source(cfg.train.init, allow_download=download,
                                 progress=stderr_progress("download", scale=1e6, unit="MB") if download else None)
    check_arch(getattr(args, "arch", None), source)
    adopt_source(cfg, source)


def _check_classes(cfg: RunConfig) -> None:
    """A new run's data folder walked for its class folders (no image is read), before the run folder is
    made: one with no class folders, one class, or val/ classes that train/ lacks is refused leaving nothing
    behind, so the same command runs once the folder is mended. The run walks it again, for the files
    themselves; the walk is a listing, cheap beside reading the images."""
    if cfg.data.data == "demo":
        return
    from alexgui.engine.data.dataset import scan_folder

    scan_folder(cfg.data.data, cfg.data.val_fraction, cfg.data.split_seed, links_out=cfg.data.follow_links)


def _check_device_and_data(cfg: RunConfig, source: Path | None) -> None:
    """The device and the data folder that a settings file (--config, or the run's config.toml at
    `source`) named, by the same checks as the flags' (commands/arguments.py); a flag given on the
    command line was checked as it was read."""
    for section, name, check in (("data", "data", data_folder), ("train", "device", devices)):
        try:
            check(getattr(getattr(cfg, section), name))
        except argparse.ArgumentTypeError as e:
            where = f"{source} [{section}] {name}" if source is not None else f"[{section}] {name}"
            raise ConfigError(f"{where}: {e}") from None


def _run_distributed(args: argparse.Namespace, cfg: RunConfig, opened: RunDir | None) -> int:
    """One torchrun process: join the group, let rank 0 create the run directory, train, leave."""
    from alexgui.engine.devices import resolve_spec
    from alexgui.engine.store.rundir import RunDir, RunDirError
    from alexgui.engine.training.distributed import (
        DistributedError,
        FollowerRunDir,
        all_reduce_sums,
        init_from_env,
        shutdown,
    )

    if _first_process():
        _say_device(cfg.train.device, distributed=True)
    # Under torchrun "auto" is settled before the processes meet: "cuda" (each process's own GPU) or
    # "cpu" (gloo); Apple's GPU cannot share gradients between processes. The run records that choice.
    cfg.train.device = resolve_spec(cfg.train.device, distributed=True)
    try:
        ctx = init_from_env(cfg.train.device)
    except DistributedError as e:
        print(f"alexgui train: {e}", file=sys.stderr)
        return 2
    try:
        problem = ""
        run_dir = opened
        if ctx.is_main and run_dir is None:
            try:
                run_dir = RunDir.create(args.out, cfg)
            except RunDirError as e:
                problem = str(e)
        # Every rank learns whether rank 0 managed, so none is left waiting for the others.
        if all_reduce_sums(ctx, [1.0 if problem else 0.0])[0] > 0:
            print(f"alexgui train (rank {ctx.rank}): {problem or 'rank 0 could not create the run directory'}",
                  file=sys.stderr)  # fmt: skip
            return 2
        if not ctx.is_main:
            run_dir = FollowerRunDir(args.out)
        return _train(cfg, run_dir, args.resume, ctx)
    finally:
        shutdown(ctx)


def _train(cfg: RunConfig, run_dir: RunDir, resume: bool, ctx: DistContext | None) -> int:
    from alexgui.commands.progress import TrainPrinter
    from alexgui.engine.events import Failed
    from alexgui.engine.training.control import TrainControl
    from alexgui.engine.training.loop import train

    control = TrainControl()
    main = ctx is None or ctx.is_main
    # Ranks other than 0 stay quiet (their figures are rank 0's) except for their own failures.
    printer = TrainPrinter(sys.stdout if main else io.StringIO(), run_dir.path, lr=cfg.train.lr, max_steps=cfg.train.max_steps)
    previous = signal.getsignal(signal.SIGINT)

    def on_interrupt(signum: int, frame: object) -> None:
        if control.stop.is_set():
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        control.stop.set()
        printer.note("stopping after this step and saving a checkpoint (Ctrl-C again to abort at once)")

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        for event in train(cfg, run_dir, control, resume=resume, dist=ctx):
            printer.show(event)
            if not main and isinstance(event, Failed):
                print(f"alexgui train (rank {ctx.rank}): {event.message}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, previous)
    return printer.exit_code
