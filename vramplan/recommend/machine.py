"""The machine a recommendation plans for: named GPUs (--gpu), this machine's GPUs, or its host RAM."""

from __future__ import annotations

import math
from dataclasses import dataclass

from vramplan.errors import PlanError
from vramplan.hardware import GPU_SPECS, GPUChoice, GPUSpec, Machine
from vramplan.speed import HOST_BANDWIDTH_GBPS

GiB = 1 << 30


@dataclass(frozen=True)
class PlannedMachine:
    """The machine recommended for: named GPUs (--gpu), this machine's GPUs, or its host RAM."""

    gpu: GPUSpec | None  # None: no GPU, plan for host RAM (CPU inference)
    gpus_per_node: int  # 0 without a GPU
    nodes: int
    host_memory_bytes: int | None  # None: unknown (no partial offload planned)
    host_bandwidth_gbps: float
    probed: bool  # this machine's probe (else named with --gpu)
    notes: tuple[str, ...] = ()

    @property
    def cpu_only(self) -> bool:
        return self.gpu is None

    @property
    def named_gpu(self) -> bool:
        """The GPU is in vramplan's table, so `--gpu NAME:COUNT` reproduces it."""
        return self.gpu is not None and any(g.name == self.gpu.name for g in GPU_SPECS)

    def describe(self) -> str:
        if self.gpu is None:
            ram = f"{self.host_memory_bytes / GiB:.1f} GiB" if self.host_memory_bytes else "unknown"
            return f"host RAM ({ram}), no GPU"
        nodes = f"{self.nodes} nodes x " if self.nodes > 1 else ""
        return f"{nodes}{self.gpus_per_node} x {self.gpu.label} ({self.gpu.name})"


def machine_for(
    probed: Machine | None,
    gpu: GPUChoice | None,
    *,
    nodes: int = 1,
    host_memory_bytes: int | None = None,
    host_bandwidth_gbps: float | None = None,
) -> PlannedMachine:
    """The machine to plan for: `gpu` (--gpu) when given, else the `probed` machine's GPUs, else its
    host RAM. `host_memory_bytes` (--host-memory) replaces the probed RAM."""
    if nodes <= 0:
        raise PlanError(f"--nodes must be at least 1, got {nodes}")
    if host_memory_bytes is not None and host_memory_bytes <= 0:
        raise PlanError("--host-memory must be a positive size in GiB")
    bw = HOST_BANDWIDTH_GBPS if host_bandwidth_gbps is None else host_bandwidth_gbps
    if not math.isfinite(bw) or bw <= 0:
        raise PlanError(f"--host-bandwidth must be a positive number of GB/s, got {bw:g}")
    notes: list[str] = []
    if gpu is not None:
        notes += [gpu.alias_note] if gpu.alias_note else []  # which card `--gpu h100` picked
        host = host_memory_bytes
        if gpu.spec.unified:  # Apple silicon: the host is the GPU's unified memory (estimate plans it)
            if host_memory_bytes is not None:
                raise PlanError(
                    f"--host-memory: the host of {gpu.spec.name} is the same unified memory as its GPU "
                    f"({(gpu.spec.unified_memory_bytes or 0) / GiB:.1f} GiB), planned from the card; "
                    "drop --host-memory"
                )
            host = gpu.spec.unified_memory_bytes
        elif host is None:
            notes.append(
                "host RAM not given: no partial offload to host RAM planned (give --host-memory GIB)"
            )
        return PlannedMachine(gpu.spec, gpu.count, nodes, host, bw, False, tuple(notes))
    if nodes > 1:
        raise PlanError("--nodes needs --gpu NAME:COUNT to say what each node holds")
    if probed is None:
        raise PlanError("no machine to plan for: give --gpu NAME[:COUNT]")
    host = host_memory_bytes if host_memory_bytes is not None else probed.host_memory_bytes
    if probed.gpus:
        spec = probed.gpu_spec()
        if len({g.name for g in probed.gpus}) > 1:
            notes.append(f"GPUs of different kinds found; planning as if all were {spec.name}")
        if not spec.bandwidth_gbps:
            notes.append(f"{spec.label}'s memory bandwidth is not in vramplan's table: no speed bound")
        return PlannedMachine(spec, len(probed.gpus), 1, host, bw, True, tuple(notes))
    notes.extend(probed.notes)
    if host is None:
        raise PlanError("no GPU found and the host RAM is unknown: give --host-memory GIB or --gpu NAME")
    notes.append(
        "no GPU found: planning for host RAM (CPU inference) with llama.cpp and Ollama; "
        "vLLM and SGLang need a GPU (plan for one with --gpu NAME[:COUNT])"
    )
    return PlannedMachine(None, 0, 1, host, bw, True, tuple(notes))
