"""`vramplan hardware [--json]`: what the probe sees on this machine."""

from __future__ import annotations

from vramplan.cli import cli
from vramplan.cli.common import console, json_option, print_json


@cli.command()
@json_option
def hardware(as_json: bool) -> None:
    """What this machine has (GPUs, their memory, host RAM) and what plans use.

    NVIDIA GPUs come from NVML (CUDA_VISIBLE_DEVICES respected, MIG devices listed); on Apple
    silicon, the unified memory and the share of it Metal lets the GPU use. Without --gpu,
    `estimate` and `deploy` plan for what this shows.
    """
    from vramplan import hardware as hw
    from vramplan.report import hardware as report

    machine = hw.probe()
    if as_json:
        print_json(report.machine_json(machine))
    else:
        report.print_machine(machine, console())
