"""Start-up latency of `vramplan estimate deepseek-r1:7b` beside a bare `python -c pass`, and of
`vramplan recommend --gpu h100-80gb:8` (every variant x quantization x runtime x layout of the catalog).

Runs each command N times (default 21) after two warm-ups and prints the medians in milliseconds.
Targets: the estimate's median under 150 ms on the CI machine (issue 2); recommend well under a
second (issue 3). `--phases` adds where the estimate's import time goes (`python -X importtime`, each
module's own time summed under click, rich or the vramplan module that imported it first; median of
the runs), and `--estimate-only` skips the recommend timings.

    python benchmarks/latency.py [--runs N] [--phases] [--estimate-only]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

# As an installed package runs: pip writes the bytecode at install time, so the commands here may write
# and reuse it (some sandboxes set PYTHONDONTWRITEBYTECODE, which would time the compiler on every run).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ESTIMATE = ["estimate", "deepseek-r1:7b"]


def median_ms(cmd: list[str], runs: int) -> float:
    for _ in range(2):
        subprocess.run(cmd, check=True, capture_output=True, env=ENV)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=ENV)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _group(module: str) -> str | None:
    top = module.split(".")[0]
    if top in ("click", "rich"):
        return top
    if top == "vramplan":
        return ".".join(
            module.split(".")[:3] if module.startswith("vramplan.cli.") else module.split(".")[:2]
        )
    return None


def import_phases(stderr: str) -> dict[str, float]:
    """Microseconds of import per group, from `-X importtime` lines (post-order, indented by depth):
    a module's own time goes to its own group, else to that of the nearest importer that has one."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "self [us]" in line:
            continue
        own, _, name = line[len("import time:") :].split("|")
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        rows.append((int(own), depth, name.strip()))
    totals: dict[str, float] = defaultdict(float)
    stack: list[tuple[int, str]] = []  # (depth, group) of the importers of the current row
    for own, depth, name in reversed(rows):  # reversed post-order: every importer before its imports
        while stack and stack[-1][0] >= depth:
            stack.pop()
        group = _group(name) or (stack[-1][1] if stack else "python start-up and the rest")
        totals[group] += own
        stack.append((depth, group))
    return totals


def print_phases(vramplan: str, runs: int) -> None:
    samples: dict[str, list[float]] = defaultdict(list)
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", vramplan, *ESTIMATE], capture_output=True, text=True, env=ENV
        )
        for group, us in import_phases(done.stderr).items():
            samples[group].append(us)
    medians = {g: statistics.median(v + [0.0] * (runs - len(v))) / 1000 for g, v in samples.items()}
    print(f"import time of `vramplan {' '.join(ESTIMATE)}` (-X importtime, median of {runs} runs):")
    for group, ms in sorted(medians.items(), key=lambda kv: -kv[1]):
        if ms >= 0.5:
            print(f"  {group:40s} {ms:6.1f} ms")
    print(f"  {'all imports':40s} {sum(medians.values()):6.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--phases", action="store_true", help="also show where the import time goes")
    parser.add_argument("--estimate-only", action="store_true", help="skip the recommend timings")
    args = parser.parse_args()
    exe = Path(sys.executable).parent / "vramplan"
    vramplan = str(exe) if exe.exists() else shutil.which("vramplan")
    if vramplan is None:
        print("vramplan is not installed in this environment", file=sys.stderr)
        return 1
    bare = median_ms([sys.executable, "-c", "pass"], args.runs)
    est = median_ms([vramplan, *ESTIMATE], args.runs)
    est_json = median_ms([vramplan, *ESTIMATE, "--json"], args.runs)
    print(f"python -c pass                          median {bare:7.1f} ms")
    print(f"vramplan estimate deepseek-r1:7b        median {est:7.1f} ms  (target < 150 ms)")
    print(f"vramplan estimate deepseek-r1:7b --json median {est_json:7.1f} ms")
    if not args.estimate_only:
        rec = median_ms([vramplan, "recommend", "--gpu", "h100-80gb:8"], args.runs)
        rec_json = median_ms([vramplan, "recommend", "--gpu", "h100-80gb:8", "--json"], args.runs)
        print(f"vramplan recommend --gpu h100-80gb:8    median {rec:7.1f} ms  (target well under 1000 ms)")
        print(f"vramplan recommend --gpu h100-80gb:8 --json median {rec_json:7.1f} ms")
    if args.phases:
        print_phases(vramplan, min(args.runs, 7))
    return 0


if __name__ == "__main__":
    sys.exit(main())
