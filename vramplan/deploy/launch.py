"""Start a written bundle through its target's launch (deploy/targets.py), and the tools the launches
share: running a command, finding a program, asking Docker for its Compose plugin.

Commands run as argument lists (never through a shell string). A missing server or tool is one
`LaunchError` naming what to install or start. The targets' launches live in their modules
(deploy/ollama.py, deploy/vllm.py, deploy/k8s.py) and call the tools here through this module, so a
test can replace them.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vramplan import lines
from vramplan.errors import LaunchError

if TYPE_CHECKING:
    from rich.console import Console

    from vramplan.deploy import Bundle
    from vramplan.deploy.verify import Verified


def run_command(argv: Sequence[str]) -> int:
    """Run one command with the terminal's stdin/stdout/stderr; its exit status. (A test seam.)"""
    try:
        return subprocess.run(list(argv), check=False).returncode
    except OSError as exc:
        raise LaunchError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None


def command_output(argv: Sequence[str], timeout_s: float) -> tuple[int, str]:
    """Run one command, its output captured (stdout and stderr together); (exit status, output). A
    command that outlives `timeout_s` is stopped and reads as exit status 124. (A test seam.)"""
    try:
        proc = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return 124, ""
    except OSError as exc:
        raise LaunchError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def which(name: str) -> str | None:
    return shutil.which(name)


def compose_works(docker: str) -> bool:
    """`docker compose version` succeeds: Docker has its Compose plugin. (A test seam.)"""
    try:
        proc = subprocess.run([docker, "compose", "version"], capture_output=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def _print(console: Console, lines: Sequence[str]) -> None:
    for line in lines:  # laid out already: rich neither wraps nor crops it
        console.print(line, soft_wrap=True, overflow="ignore", crop=False, markup=False, highlight=False)


def show_command(console: Console, argv: Sequence[str], tail: str = "") -> None:
    """`$ argv` as the user would type it, wrapped to the terminal between arguments."""
    _print(console, lines.shell_lines(lines.command_words(argv), max(console.width, 20), "$ ", tail))


def show_shell(console: Console, line: str, first: str = "") -> None:
    """A shell line after the label `first`, wrapped between its words (a remark in parentheses after
    three spaces follows its last line)."""
    _print(console, lines.hint_lines(line, max(console.width, 20), first))


def show(console: Console, text: str) -> None:
    """A line of progress, wrapped at word boundaries to the terminal."""
    _print(console, lines.wrap(text, max(console.width, 20)))


def compose_up(console: Console, docker: str, out: Path, health_url: str, instead: str) -> None:
    """`docker compose up -d` of the bundle in `out`, then how to watch it; `instead` (what to run
    without Docker) completes the error when docker has no Compose plugin."""
    compose = out / "docker-compose.yaml"
    show_command(console, ["docker", "compose", "-f", str(compose), "up", "-d"])
    rc = run_command([docker, "compose", "-f", str(compose), "up", "-d"])
    if rc != 0 and not compose_works(docker):
        raise LaunchError(
            "docker has no Compose plugin (`docker compose version` fails): install it "
            f"(https://docs.docker.com/compose/install/linux/), or {instead}"
        )
    if rc != 0:
        raise LaunchError(
            f"docker compose up failed (exit {rc}); GPUs in containers need the NVIDIA Container Toolkit"
        )
    show_shell(
        console,
        f"docker compose -f {shlex.quote(str(compose))} logs -f   (ready when {health_url} answers)",
        "started; watch it with: ",
    )


def launch(
    bundle: Bundle, console: Console, *, dry_run_first: bool = False, verify: bool = True
) -> Verified | None:
    """Start what `bundle` describes with its target's launch; raises LaunchError when it cannot. Where
    the target verifies what it started (llama.cpp), the plan beside the server's own startup log."""
    from vramplan.deploy.targets import LaunchOptions, get_target

    target = get_target(bundle.plan.target)
    return target.launch(bundle, console, LaunchOptions(dry_run_first=dry_run_first, verify=verify))
