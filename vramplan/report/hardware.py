"""Printing what the probe found (`vramplan hardware`), and its JSON form, which `recommend --json`
reuses as its "machine"."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from vramplan.hardware import Machine, MigDevice, ProbedGPU
from vramplan.report import gib

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


def print_machine(machine: Machine, console: Console) -> None:
    if machine.gpus:
        driver = f"NVIDIA driver {machine.driver_version or '?'}, CUDA {machine.cuda_driver_version or '?'}"
        console.print(f"GPUs ({driver})")
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("gpu", justify="right", no_wrap=True)
        table.add_column("nvml", justify="right", no_wrap=True)
        table.add_column("name", overflow="fold")
        for col in ("total", "free", "used"):
            table.add_column(col, justify="right", no_wrap=True)
        table.add_column("cc", no_wrap=True)
        table.add_column("spec", overflow="fold")
        for g in machine.gpus:
            table.add_row(
                str(g.index),
                "-" if g.nvml_index is None else str(g.nvml_index),
                g.name,
                gib(g.memory_total_bytes),
                gib(g.memory_free_bytes),
                gib(g.memory_used_bytes),
                _cc(g.compute_capability) or "-",
                g.spec.name if g.spec else "unknown card",
            )
            for m in g.mig:
                ids = (
                    f" (GI {m.gpu_instance_id}, CI {m.compute_instance_id})"
                    if m.gpu_instance_id is not None
                    else ""
                )
                table.add_row(
                    "",
                    "",
                    f"└ MIG {m.profile or m.index}{ids}",
                    gib(m.memory_total_bytes),
                    gib(m.memory_free_bytes),
                    gib(m.memory_used_bytes),
                    "",
                    "MIG device",
                )
        console.print(table)
    else:
        console.print("GPUs: none found")
    host = f"host: {gib(machine.host_memory_bytes)} RAM"
    if machine.host_available_bytes is not None:
        host += f" ({gib(machine.host_available_bytes)} available)"
    host += f"  ·  {machine.cpu_cores if machine.cpu_cores is not None else '?'} CPU cores"
    if machine.unified_memory_bytes is not None:
        host += f"  ·  unified memory, GPU share {gib(machine.gpu_share_bytes)}"
    console.print(host)
    console.print(plan_line(machine))
    for note in machine.notes:
        console.print(f"note: {note}")
