"""Keep the examples true: every ```console block of README.md and docs/*.md whose first line is
`$ vramplan ...` holds the real output of each `$ vramplan ...` command in it.

`python docs/readme_examples.py` reruns every example and rewrites its output in place;
`--check` fails when one is stale (tests/test_docs.py runs that). The commands run as a user would type
them (a subprocess, no colour) in a scratch directory, so `deploy` writes nothing into the checkout and
paths under `tests/` resolve. The docs show each at 80 columns (a pipe, a default terminal); each runs
at 120 columns too, and either width fails when a line is wider than it, ends in spaces, or the output
starts with a blank line. A block right after a `<!-- live -->` line shows what the
probe saw on the machine that wrote it (no --gpu): `--live` reruns those too, `--check` leaves them alone.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?P<live><!-- live -->\n)?```console\n(?P<body>\$ vramplan .*?)```", re.S)
COMMAND = re.compile(r"^\$ (vramplan .*)$", re.M)


SHOWN = 80  # the width the docs show
CHECKED = (80, 120)  # the widths each example's layout is checked at


def run_example(cmd: str, scratch: Path, columns: int = SHOWN) -> str:
    argv = shlex.split(cmd)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VRAMPLAN_", "FORCE_COLOR"))}
    env.update(COLUMNS=str(columns), TERM="dumb", NO_COLOR="1", HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, "-m", "vramplan", *argv[1:]],
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    return out if out.endswith("\n") else out + "\n"


def layout_problems(cmd: str, out: str, columns: int) -> list[str]:
    """What breaks the layout rules in `out` of `cmd` at `columns`."""
    where = f"`{cmd}` at {columns} columns"
    lines = out.splitlines()
    problems = [f"{where} starts with a blank line"] if lines and not lines[0].strip() else []
    for line in lines:
        if line != line.rstrip():
            problems.append(f"{where}: trailing spaces in {line!r}")
        if len(line) > columns:
            problems.append(f"{where}: {len(line)} columns in {line!r}")
    return problems


def render(text: str, live: bool, problems: list[str]) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        (scratch / "tests").symlink_to(ROOT / "tests")

        def clean() -> None:
            for old in scratch.iterdir():  # each block starts from an empty directory
                if old.name != "tests":
                    subprocess.run(["rm", "-rf", str(old)], check=True)

        def one(m: re.Match[str]) -> str:
            if m["live"] and not live:
                return m.group(0)
            commands = COMMAND.findall(m["body"])
            shown: list[str] = []
            for columns in CHECKED:
                clean()
                for cmd in commands:
                    out = run_example(cmd, scratch, columns)
                    problems.extend(layout_problems(cmd, out, columns))
                    if columns == SHOWN:
                        shown.append(out)
            runs = [f"$ {cmd}\n{out}" for cmd, out in zip(commands, shown, strict=True)]
            return f"{m['live'] or ''}```console\n" + "\n".join(runs) + "```"

        return BLOCK.sub(one, text)


def main(argv: list[str]) -> int:
    stale: list[str] = []
    problems: list[str] = []
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        new = render(text, live="--live" in argv, problems=problems)
        if new == text:
            continue
        if "--check" in argv:
            stale.append(path.relative_to(ROOT).as_posix())
        else:
            path.write_text(new, encoding="utf-8")
    for p in problems:
        print(p, file=sys.stderr)
    if stale:
        print(f"stale examples in {', '.join(stale)}; run `python docs/readme_examples.py`", file=sys.stderr)
    return 1 if stale or problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
