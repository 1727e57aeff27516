"""`vramplan hardware [--json]`: what the probe sees on this machine."""

from __future__ import annotations

import click

from vramplan.cli import cli
from vramplan.cli.common import console, print_json


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (integer bytes) instead of a table.")
def hardware(as_json: bool) -> None:
    """What this machine has: NVIDIA GPUs (NVML, CUDA_VISIBLE_DEVICES respected, MIG devices),
    free and total memory, host RAM and cores, Apple unified memory, and what plans made without
    --gpu will use."""
    from vramplan import hardware as hw
    from vramplan.report import hardware as report

    machine = hw.probe()
    if as_json:
        print_json(report.machine_json(machine))
    else:
        report.print_machine(machine, console())
