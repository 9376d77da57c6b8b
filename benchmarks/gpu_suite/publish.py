"""Copy a returned GPU-suite result into the repository, for review and commit.

    python -m benchmarks.gpu_suite.publish RESULT_DIR [--allow-dry-run]      (or: make gpu-suite-publish RESULT=...)

RESULT_DIR holds what the device machine sent back (suite.json, suite.md, recipe-curves.png,
experiments.tar.gz). This writes:

    benchmarks/README.md         the part between the gpu-suite markers: the report, headings two levels down
    docs/experiments/gpu-suite/  suite.json, suite.md and the plots of this result; sections this run
                                 did not select (--sections) keep the figures published before
    docs/experiments/<name>/     each experiment's report.json, report.md and plots, from the archive

A dry run's figures are toy sizes on a CPU, never results: it is refused unless --allow-dry-run (for
checking this script). Archive members are extracted only by name (experiments/<name>/<file> with a
report suffix), never by the paths the archive claims.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tarfile
from pathlib import Path
from typing import Any

from benchmarks.gpu_suite import report
from benchmarks.gpu_suite.experiments import ARCHIVE, ORDER, REPORT_SUFFIXES

ROOT = Path(__file__).resolve().parents[2]
BEGIN = "<!-- gpu-suite-results:begin -->"
END = "<!-- gpu-suite-results:end -->"
RESULT_FOLDER = "gpu-suite"  # under docs/experiments/


class PublishError(ValueError):
    """A result folder or a target file that cannot be used; the message says which and why."""


def load_result(folder: Path) -> dict[str, Any]:
    path = folder / report.JSON_NAME
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise PublishError(f"{path}: cannot read the suite's report ({e})") from None
    if not isinstance(result, dict) or result.get("format") != report.FORMAT:
        raise PublishError(f"{path}: not a GPU-suite report (format {report.FORMAT} expected)")
    return result


def readme_block(result: dict[str, Any]) -> str:
    """The report as Markdown for benchmarks/README.md: its title in bold, its sections two levels down
    (under the README's "### Latest GPU suite result"), plots linked where they are published."""
    title, _, text = report.markdown(result).partition("\n")
    text = f"**{title.lstrip('# ')}**\n" + re.sub(r"^(#+) ", lambda m: "##" + m.group(1) + " ", text, flags=re.MULTILINE)
    return re.sub(r"!\[([^\]]*)\]\(([^)/]+\.png)\)", rf"![\1](../docs/experiments/{RESULT_FOLDER}/\2)", text)


def update_readme(readme: Path, block: str) -> None:
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise PublishError(f"{readme}: the markers {BEGIN} and {END} are missing")
    readme.write_text(text[: start + len(BEGIN)] + "\n" + block.strip() + "\n" + text[end:], encoding="utf-8")


def unpack_experiments(archive: Path, docs: Path) -> list[Path]:
    """experiments/<name>/<report file> members into docs/<name>/; anything else is ignored."""
    written: list[Path] = []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 3 or parts[0] != "experiments" or parts[1] not in ORDER:
                continue
            if Path(parts[2]).suffix not in REPORT_SUFFIXES or parts[2].startswith("."):
                continue
            source = tar.extractfile(member)
            if source is None:
                continue
            target = docs / parts[1] / parts[2]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read())
            written.append(target)
    return written


def merge_previous(result: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    """A run of some sections (--sections) keeps the last published figures of the others."""
    old = {s["name"]: s for s in previous.get("sections", [])}
    merged = []
    for section in result["sections"]:
        earlier = old.get(section["name"])
        if section["status"].startswith("skipped: not selected") and earlier is not None:
            section = {**earlier, "notes": [*earlier["notes"], f"from the run of {previous.get('started')}"]}
        merged.append(section)
    return {**result, "sections": merged}


def publish(folder: Path, readme: Path, docs: Path, allow_dry_run: bool = False) -> list[Path]:
    """Copy one result into the README and docs/experiments; returns the files written."""
    result = load_result(folder)
    if result.get("dry_run") and not allow_dry_run:
        raise PublishError(f"{folder}: a dry run (toy sizes on the CPU) is not a result; not published")
    target = docs / RESULT_FOLDER
    if (target / report.JSON_NAME).is_file():
        result = merge_previous(result, load_result(target))
    update_readme(readme, readme_block(result))
    written = [readme]
    target.mkdir(parents=True, exist_ok=True)
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix == ".png":
            shutil.copyfile(f, target / f.name)
            written.append(target / f.name)
    report.write(target, result)  # suite.json and suite.md, merged with what they held
    written += [target / report.JSON_NAME, target / report.MD_NAME]
    if (folder / ARCHIVE).is_file():
        written += unpack_experiments(folder / ARCHIVE, docs)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_suite.publish", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("result", type=Path, help="the folder the device machine's files came back to")
    p.add_argument("--readme", type=Path, default=ROOT / "benchmarks" / "README.md")
    p.add_argument("--docs", type=Path, default=ROOT / "docs" / "experiments")
    p.add_argument("--allow-dry-run", action="store_true", help="publish a dry run too (to test this script)")
    args = p.parse_args(argv)
    try:
        written = publish(args.result, args.readme, args.docs, args.allow_dry_run)
    except (PublishError, OSError, tarfile.TarError) as e:
        print(f"publish: {e}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    print("review with `git diff`, then commit the README, docs/experiments/*/report.* and the PNGs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
