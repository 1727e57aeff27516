"""Printing what the probe found (`vramplan hardware`), and its JSON form, which `recommend --json`
reuses as its "machine"."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from vramplan.hardware import Machine, MigDevice, ProbedGPU
from vramplan.report import GiB, gib
from vramplan.report.layout import DOT, Cell, Column, emit, natural, note, print_table, say, table, width_of

NO_GPU_PLAN = "no GPU: plans are for host RAM (CPU inference)"


def _cc(cc: tuple[int, int] | None) -> str | None:
    return None if cc is None else f"{cc[0]}.{cc[1]}"


def mig_json(m: MigDevice) -> dict[str, Any]:
    return {
        "index": m.index,
        "name": m.name,
        "uuid": m.uuid,
        "profile": m.profile,
        "gpu_instance_id": m.gpu_instance_id,
        "compute_instance_id": m.compute_instance_id,
        "memory_total_bytes": m.memory_total_bytes,
        "memory_free_bytes": m.memory_free_bytes,
        "memory_used_bytes": m.memory_used_bytes,
    }


def gpu_json(g: ProbedGPU) -> dict[str, Any]:
    return {
        "index": g.index,
        "nvml_index": g.nvml_index,
        "name": g.name,
        "uuid": g.uuid,
        "memory_total_bytes": g.memory_total_bytes,
        "memory_free_bytes": g.memory_free_bytes,
        "memory_used_bytes": g.memory_used_bytes,
        "compute_capability": _cc(g.compute_capability),
        "spec": g.spec.name if g.spec else None,
        "mig_enabled": g.mig_enabled,
        "mig": [mig_json(m) for m in g.mig],
    }


def plan_json(machine: Machine) -> dict[str, Any]:
    """What plans made without --gpu use: GPUs of one spec, or host RAM."""
    if machine.gpu_count():
        spec = machine.gpu_spec()
        return {
            "target": "gpu",
            "gpu": spec.name,
            "gpu_count": machine.gpu_count(),
            "capacity_bytes": spec.memory_bytes,
        }
    metal = machine.metal_gpu()
    if metal is not None:  # Apple silicon: llama.cpp / Ollama plan its GPU, Metal's share of the memory
        return {"target": "gpu", "gpu": metal.name, "gpu_count": 1, "capacity_bytes": metal.memory_bytes}
    return {"target": "host", "gpu": None, "gpu_count": 0, "capacity_bytes": machine.host_memory_bytes}


def machine_json(machine: Machine) -> dict[str, Any]:
    """The machine as JSON (integer bytes, stable keys)."""
    return {
        "gpus": [gpu_json(g) for g in machine.gpus],
        "driver_version": machine.driver_version,
        "cuda_driver_version": machine.cuda_driver_version,
        "host_memory_bytes": machine.host_memory_bytes,
        "host_available_bytes": machine.host_available_bytes,
        "cpu_cores": machine.cpu_cores,
        "unified_memory_bytes": machine.unified_memory_bytes,
        "gpu_share_bytes": machine.gpu_share_bytes,
        "plan": plan_json(machine),
        "notes": list(machine.notes),
    }


def plan_line(machine: Machine) -> str:
    plan = plan_json(machine)
    if machine.metal_gpu() is not None:
        return (
            f"plan: llama.cpp / Ollama on the Apple silicon GPU, {gib(machine.gpu_share_bytes)} "
            f"(Metal's share) of {gib(machine.unified_memory_bytes)} unified memory; vLLM and SGLang do "
            "not run here"
        )
    if plan["target"] == "gpu":
        return f"plan: {plan['gpu_count']} x {plan['gpu']}, {gib(plan['capacity_bytes'])} each"
    line = f"{NO_GPU_PLAN}, {gib(machine.host_memory_bytes)}"
    if machine.gpu_share_bytes is not None:
        line += f"; Metal can hold {gib(machine.gpu_share_bytes)} of it for llama.cpp / Ollama"
    return line


GPU_COLUMNS = [
    Column("gpu", right=True),
    Column("nvml", right=True),
    Column("name"),
    Column("total", right=True),
    Column("free", right=True),
    Column("used", right=True),
    Column("cc"),
    Column("spec"),
]


def _n(n: int | None) -> str:
    return "-" if n is None else f"{n / GiB:.2f}"


def _gpu_rows(machine: Machine) -> list[list[Cell]]:
    rows: list[list[Cell]] = []
    for g in machine.gpus:
        rows.append(
            [
                str(g.index),
                "-" if g.nvml_index is None else str(g.nvml_index),
                g.name,
                _n(g.memory_total_bytes),
                _n(g.memory_free_bytes),
                _n(g.memory_used_bytes),
                _cc(g.compute_capability) or "-",
                g.spec.name if g.spec else "unknown card",
            ]
        )
        for m in g.mig:
            ids = (
                f" (GI {m.gpu_instance_id}, CI {m.compute_instance_id})"
                if m.gpu_instance_id is not None
                else ""
            )
            rows.append(
                [
                    "",
                    "",
                    f"└ MIG {m.profile or m.index}{ids}",
                    _n(m.memory_total_bytes),
                    _n(m.memory_free_bytes),
                    _n(m.memory_used_bytes),
                    "",
                    "MIG device",
                ]
            )
    return rows


def print_machine(machine: Machine, console: Console) -> None:
    if machine.gpus:
        driver = f"NVIDIA driver {machine.driver_version or '?'}, CUDA {machine.cuda_driver_version or '?'}"
        say(console, f"GPUs ({driver})")
        rows = _gpu_rows(machine)
        emit(console, "")
        print_table(console, table(GPU_COLUMNS, rows, width_of(console)) or natural(GPU_COLUMNS, rows))
        emit(console, "")
        say(console, "total, free, used: GiB")
    else:
        say(console, "GPUs: none found")
    host = f"host: {gib(machine.host_memory_bytes)} RAM"
    if machine.host_available_bytes is not None:
        host += f" ({gib(machine.host_available_bytes)} available)"
    host += f"{DOT}{machine.cpu_cores if machine.cpu_cores is not None else '?'} CPU cores"
    if machine.unified_memory_bytes is not None:
        host += f"{DOT}unified memory, GPU share {gib(machine.gpu_share_bytes)}"
    say(console, host)
    names = [g.name for g in machine.gpus]
    say(console, plan_line(machine), keep=names)
    for n in machine.notes:
        note(console, n, keep=names)
