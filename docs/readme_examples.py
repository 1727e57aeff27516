"""Keep the examples true: every ```console block of README.md and docs/*.md whose first line is
`$ vramplan ...` holds the real output of each `$ vramplan ...` command in it.

`python docs/readme_examples.py` reruns every example and rewrites its output in place;
`--check` fails when one is stale (tests/test_docs.py runs that). The commands run as a user would type
them (a subprocess, 100 columns, no colour) in a scratch directory, so `deploy` writes nothing into the
checkout and paths under `tests/` resolve. A block right after a `<!-- live -->` line shows what the
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


def run_example(cmd: str, scratch: Path) -> str:
    argv = shlex.split(cmd)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VRAMPLAN_", "FORCE_COLOR"))}
    env.update(COLUMNS="100", TERM="dumb", NO_COLOR="1", HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, "-m", "vramplan", *argv[1:]],
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    return "\n".join(line.rstrip() for line in out.splitlines()) + "\n"


def render(text: str, live: bool) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        (scratch / "tests").symlink_to(ROOT / "tests")

        def one(m: re.Match[str]) -> str:
            if m["live"] and not live:
                return m.group(0)
            for old in scratch.iterdir():  # each block starts from an empty directory
                if old.name != "tests":
                    subprocess.run(["rm", "-rf", str(old)], check=True)
            runs = [f"$ {cmd}\n{run_example(cmd, scratch)}" for cmd in COMMAND.findall(m["body"])]
            return f"{m['live'] or ''}```console\n" + "\n".join(runs) + "```"

        return BLOCK.sub(one, text)


def main(argv: list[str]) -> int:
    stale = []
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        new = render(text, live="--live" in argv)
        if new == text:
            continue
        if "--check" in argv:
            stale.append(path.relative_to(ROOT).as_posix())
        else:
            path.write_text(new, encoding="utf-8")
    if stale:
        print(f"stale examples in {', '.join(stale)}; run `python docs/readme_examples.py`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
