"""Ctrl-C at any moment after the interpreter has started ends with one line and exit 130, and output
cut off by a closed pipe (`vramplan ... | head -1`) ends quietly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _default_sigint() -> None:
    # a run started in the background (nohup, `cmd &` without job control) inherits SIGINT ignored, and
    # then Python installs no KeyboardInterrupt handler; the child starts as a terminal's would
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "VRAMPLAN_TESTING": ""}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
        preexec_fn=_default_sigint,
    )


def test_interrupt_while_the_command_line_is_imported() -> None:
    """SIGINT right after `vramplan.cli` is imported, before main() runs: the start-up handler."""
    r = _python(
        "import os, signal, sys, time\n"
        "sys.argv = ['vramplan', 'estimate', 'r1-7b']\n"
        "import vramplan.cli\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(5)\n"
    )
    assert (r.returncode, r.stderr, r.stdout) == (130, "Error: interrupted\n", "")


def test_interrupt_while_a_command_module_is_imported() -> None:
    """KeyboardInterrupt while the lazy group imports the command's module (inside main())."""
    r = _python(
        "import sys\n"
        "sys.argv = ['vramplan', 'estimate', 'r1-7b']\n"
        "import vramplan.cli as c\n"
        "def interrupted(name, *a):\n"
        "    raise KeyboardInterrupt\n"
        "c.importlib.import_module = interrupted\n"
        "c.main()\n"
    )
    assert (r.returncode, r.stderr, r.stdout) == (130, "Error: interrupted\n", "")


def test_importing_the_cli_in_another_program_leaves_its_sigint_alone() -> None:
    r = _python(
        "import signal, sys\n"
        "sys.argv = ['myprog']\n"
        "import vramplan.cli\n"
        "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n"
    )
    assert r.stdout == "True\n"


def test_a_closed_pipe_ends_quietly() -> None:
    """`vramplan catalog | true`: the reader is gone before the output is written; no traceback, no message."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100"}
    r = subprocess.run(
        [
            "bash",
            "-c",
            f"{sys.executable} -m vramplan catalog | true; echo ${{PIPESTATUS[0]}}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert r.stderr == ""
    assert r.stdout.strip() in ("0", "1")
