"""Start-up latency of `vramplan estimate deepseek-r1:7b` beside a bare `python -c pass`, and of
`vramplan recommend --gpu h100-80gb:8` (every variant x quantization x runtime x layout of the catalog).

Runs each command N times (default 21) after two warm-ups and prints the medians in milliseconds.
Targets: the estimate's median under 150 ms on the CI machine (issue 2); recommend well under a
second (issue 3).

    python benchmarks/latency.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

# As an installed package runs: pip writes the bytecode at install time, so the commands here may write
# and reuse it (some sandboxes set PYTHONDONTWRITEBYTECODE, which would time the compiler on every run).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def median_ms(cmd: list[str], runs: int) -> float:
    for _ in range(2):
        subprocess.run(cmd, check=True, capture_output=True, env=ENV)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=ENV)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    exe = Path(sys.executable).parent / "vramplan"
    vramplan = str(exe) if exe.exists() else shutil.which("vramplan")
    if vramplan is None:
        print("vramplan is not installed in this environment", file=sys.stderr)
        return 1
    bare = median_ms([sys.executable, "-c", "pass"], args.runs)
    est = median_ms([vramplan, "estimate", "deepseek-r1:7b"], args.runs)
    est_json = median_ms([vramplan, "estimate", "deepseek-r1:7b", "--json"], args.runs)
    print(f"python -c pass                          median {bare:7.1f} ms")
    print(f"vramplan estimate deepseek-r1:7b        median {est:7.1f} ms  (target < 150 ms)")
    print(f"vramplan estimate deepseek-r1:7b --json median {est_json:7.1f} ms")
    rec = median_ms([vramplan, "recommend", "--gpu", "h100-80gb:8"], args.runs)
    rec_json = median_ms([vramplan, "recommend", "--gpu", "h100-80gb:8", "--json"], args.runs)
    print(f"vramplan recommend --gpu h100-80gb:8    median {rec:7.1f} ms  (target well under 1000 ms)")
    print(f"vramplan recommend --gpu h100-80gb:8 --json median {rec_json:7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
