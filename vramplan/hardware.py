"""GPUs: `--gpu NAME[:COUNT]`, the machine the probe found, and what it means for a plan.

The spec table and its names live in vramplan/gpus.py (data: gpus.yaml); `probe()` reads this machine
(NVML in vramplan/nvml.py, host RAM and Apple unified memory in vramplan/host.py) and maps the cards
NVML names to the table. This module imports both; neither imports it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from vramplan.errors import HardwareError
from vramplan.gpus import (
    MAX_GPUS_PER_NODE,
    PARTIAL_MATCH_MEMORY_TOLERANCE,
    GiB,
    GPUSpec,
    MiB,
    alias_note,
    builtin_specs,
    gpu_spec,
    gpu_table,
    match_nvml_name,
    spec_for_nvml_name,
    split_mig_name,
)
from vramplan.words import count

if TYPE_CHECKING:
    from vramplan.host import HostInfo
    from vramplan.nvml import NvmlGPU

__all__ = [
    "GPU_SPECS",
    "MAX_GPUS_PER_NODE",
    "PARTIAL_MATCH_MEMORY_TOLERANCE",
    "GPUChoice",
    "GPUSpec",
    "GiB",
    "Machine",
    "MiB",
    "MigDevice",
    "ProbedGPU",
    "crowded_node_note",
    "gpu_spec",
    "match_nvml_name",
    "parse_gpu",
    "parse_size",
    "probe",
    "probe_machine",
    "size_text",
    "spec_for_nvml_name",
    "split_mig_name",
    "unified_memory_note",
]

GPU_SPECS: tuple[GPUSpec, ...]  # the built-in table (gpus.yaml), read on first use: see __getattr__


def __getattr__(name: str) -> Any:
    """`GPU_SPECS`, read from gpus.yaml only when something asks for it (PEP 562)."""
    if name == "GPU_SPECS":
        return builtin_specs()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class GPUChoice:
    """`--gpu NAME[:COUNT]`, parsed: a spec and how many of the card a node has."""

    spec: GPUSpec
    count: int
    # the name given was an alias that picks one card of several (`h100`): which one (gpus.alias_note)
    alias_note: str | None = None

    @property
    def notes(self) -> tuple[str, ...]:
        notes = (self.alias_note, crowded_node_note(self.spec, self.count))
        return tuple(n for n in notes if n)


def crowded_node_note(spec: GPUSpec, count: int) -> str | None:
    """The plan's note for a node of more GPUs than the card's usual server holds (a box of ten 3090s
    is real; the plan takes the count as given)."""
    if count <= spec.max_per_node:
        return None
    return (
        f"{count} x {spec.name} in one node: more than the {spec.max_per_node} its usual server holds; "
        "planned as one machine with all of them"
    )


def unified_memory_note(spec: GPUSpec, host_left_bytes: int) -> str:
    """The plan's note for an Apple silicon GPU: the one memory, the GPU's share, the host's part."""
    from vramplan.host import metal_gpu_share, metal_rule_words

    unified = spec.unified_memory_bytes or 0
    rule = metal_rule_words(unified)
    if spec.memory_bytes != metal_gpu_share(unified, None):
        rule = "set by iogpu.wired_limit_mb"  # the probe read a limit the user raised
    return (
        f"Apple silicon: {unified / GiB:.1f} GiB of unified memory; Metal lets the GPU use "
        f"{spec.memory_bytes / GiB:.1f} GiB of it ({rule}), and the host part of the "
        f"plan gets what the GPU part leaves ({host_left_bytes / GiB:.1f} GiB)"
    )


def parse_gpu(text: str, catalogs: Sequence[str] = ()) -> GPUChoice:
    """Parse `NAME[:COUNT]` (`h100-80gb:8`, `rtx-4090`); `catalogs`: user catalogs whose `gpus:` add
    to the table (besides VRAMPLAN_CATALOG and `gpus.use_catalogs`)."""
    name, colon, count_text = text.partition(":")
    if not name.strip():
        raise HardwareError(f"--gpu {text!r} names no GPU; write NAME[:COUNT], e.g. h100-80gb:8")
    table = gpu_table(catalogs)
    spec = gpu_spec(name, table)
    note = alias_note(name, table)
    if not colon:
        return GPUChoice(spec, 1, note)
    try:
        count = int(count_text)
    except ValueError:
        raise HardwareError(f"GPU count in {text!r} must be a whole number") from None
    if count <= 0:
        raise HardwareError(f"GPU count in {text!r} must be at least 1")
    if spec.unified and count != 1:
        raise HardwareError(
            f"--gpu {text!r}: a Mac has one Apple silicon GPU; write --gpu {spec.name} (llama.cpp's RPC "
            "across several Macs is not planned)"
        )
    if count > MAX_GPUS_PER_NODE:
        raise HardwareError(
            f"GPU count in {text!r} is more than the {MAX_GPUS_PER_NODE} GPUs one node can hold; "
            "use --nodes for more"
        )
    return GPUChoice(spec, count, note)


# A memory size on the command line (--host-memory): a number and an optional unit. A bare number is
# GiB (what --host-memory always took); K / M / G / T alone are binary, as in `free -g` and Docker's
# `--memory 512g`; KB / MB / GB / TB are decimal, as disk and RAM vendors write them.
_SIZE = re.compile(
    r"^\s*(?P<n>[-+]?[0-9]*\.?[0-9]+(?:e[0-9]+)?|[-+]?nan|[-+]?inf)\s*(?P<unit>[a-z]*)\s*$", re.IGNORECASE
)
_UNITS = {
    "": GiB,
    "b": 1,
    "k": 1 << 10,
    "kib": 1 << 10,
    "m": MiB,
    "mib": MiB,
    "g": GiB,
    "gib": GiB,
    "t": 1 << 40,
    "tib": 1 << 40,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
}


def parse_size(text: str, flag: str) -> int:
    """`64`, `64GiB`, `512G`, `1.5TiB`, `500GB` -> bytes (a bare number is GiB); one clear error
    naming `flag` otherwise."""
    m = _SIZE.match(text)
    unit = _UNITS.get(m["unit"].lower()) if m else None
    if m is None or unit is None:
        raise HardwareError(f"{flag} must be a size such as 64GiB, 512G or 64 (GiB), got {text!r}")
    n = float(m["n"])
    if not math.isfinite(n) or n <= 0 or int(n * unit) <= 0:
        raise HardwareError(f"{flag} must be a positive size in GiB, got {text.strip()}")
    return int(n * unit)


def size_text(n: int) -> str:
    """Bytes as `parse_size` reads them back exactly: 64GiB, 1536MiB, else a count of bytes."""
    for unit, name in ((1 << 40, "TiB"), (GiB, "GiB"), (MiB, "MiB")):
        if n % unit == 0:
            return f"{n // unit}{name}"
    return f"{n}B"


# --------------------------------------------------------------------------- the local machine


@dataclass(frozen=True)
class MigDevice:
    """One MIG device (a GPU instance with its compute instance) of a GPU in MIG mode."""

    index: int  # MIG device index under its parent (nvmlDeviceGetMigDeviceHandleByIndex)
    name: str  # as NVML reports it, e.g. "NVIDIA A100-SXM4-40GB MIG 1g.5gb"
    uuid: str | None  # "MIG-..."
    memory_total_bytes: int
    memory_free_bytes: int
    memory_used_bytes: int
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None

    @property
    def profile(self) -> str | None:
        return split_mig_name(self.name)[1]


@dataclass(frozen=True)
class ProbedGPU:
    """A GPU as the probe reads it through NVML (or one MIG device of it)."""

    index: int  # the index CUDA gives it (its place in CUDA_VISIBLE_DEVICES when that is set)
    name: str  # as NVML reports it, e.g. "NVIDIA H100 80GB HBM3"
    memory_total_bytes: int
    memory_free_bytes: int
    spec: GPUSpec | None  # the spec-table entry the name maps to, if any
    nvml_index: int | None = None  # NVML's own index (PCI bus order)
    uuid: str | None = None  # "GPU-..."
    memory_used_bytes: int | None = None
    compute_capability: tuple[int, int] | None = None
    mig_enabled: bool = False
    mig: tuple[MigDevice, ...] = ()  # the MIG devices visible to this process


@dataclass(frozen=True)
class Machine:
    """What the probe found: the GPUs, host RAM and cores, driver versions, and notes for the plan."""

    gpus: tuple[ProbedGPU, ...]
    host_memory_bytes: int | None
    cpu_cores: int | None
    notes: tuple[str, ...] = ()
    host_available_bytes: int | None = None
    driver_version: str | None = None  # NVIDIA driver, e.g. "550.54.15"
    cuda_driver_version: str | None = None  # the CUDA version the driver supports, e.g. "12.4"
    unified_memory_bytes: int | None = None  # Apple silicon: RAM shared by CPU and GPU
    gpu_share_bytes: int | None = None  # Apple silicon: what Metal lets the GPU use of it

    def plan_gpus(self) -> tuple[ProbedGPU, ...]:
        """The devices one CUDA process plans on: every whole GPU; with only MIG GPUs, one MIG device
        (the MIG user guide: a CUDA process enumerates a single MIG device), as a GPU of its own."""
        whole = tuple(g for g in self.gpus if not g.mig_enabled)
        if whole:
            return whole
        for g in self.gpus:
            if g.mig:
                return (_mig_as_gpu(g, g.mig[0]),)
        return ()

    def gpu_count(self) -> int:
        return len(self.plan_gpus())

    def metal_gpu(self) -> GPUSpec | None:
        """Apple silicon: its GPU as a spec, with the Metal share the probe read as its memory (and
        the unified memory the host shares), for llama.cpp / Ollama plans; None elsewhere. The chip is
        not read, so its bandwidth is not known (`--gpu m3-max-128gb` names one from the table)."""
        if self.unified_memory_bytes is None or self.gpu_share_bytes is None or self.gpus:
            return None
        return GPUSpec(
            name=f"apple-silicon-{self.unified_memory_bytes // GiB}gb",
            label=f"Apple silicon GPU (Metal), {self.unified_memory_bytes / GiB:.0f} GiB unified memory",
            memory_bytes=self.gpu_share_bytes,
            bandwidth_gbps=0.0,
            compute_capability=None,
            fp8=False,
            fp4=False,
            interconnect="none",
            max_per_node=1,
            unified_memory_bytes=self.unified_memory_bytes,
        )

    def gpu_spec(self) -> GPUSpec:
        """The spec to plan with: the table entry of the smallest planned GPU (the first of equals),
        with the memory NVML reports; an unknown card gets one made from its NVML answers."""
        gpus = self.plan_gpus()
        if not gpus:
            raise HardwareError("no usable GPU was found on this machine; pass --gpu NAME[:COUNT]")
        g = min(gpus, key=lambda x: x.memory_total_bytes)
        if g.spec is not None:
            if g.spec.memory_bytes == g.memory_total_bytes:
                return g.spec
            return replace(g.spec, memory_bytes=g.memory_total_bytes)
        cc = g.compute_capability
        return GPUSpec(
            name=re.sub(r"[^a-z0-9.]+", "-", g.name.lower()).strip("-"),
            label=g.name,
            memory_bytes=g.memory_total_bytes,
            bandwidth_gbps=0.0,  # not known for a card outside the table
            compute_capability=cc,
            # FP8 tensor cores from Ada / Hopper (8.9, 9.0) on, FP4 from Blackwell (10.0, 12.0):
            # NVIDIA's Ada, Hopper and Blackwell architecture whitepapers.
            fp8=cc is not None and cc >= (8, 9),
            fp4=cc is not None and cc >= (10, 0),
            interconnect="pcie",
            max_per_node=max(1, len(gpus)),
        )


def _mig_as_gpu(parent: ProbedGPU, mig: MigDevice) -> ProbedGPU:
    """A MIG device as the GPU a plan sees: its own memory, and the parent's spec scaled to it."""
    spec = parent.spec
    if spec is not None:
        share = mig.memory_total_bytes / parent.memory_total_bytes if parent.memory_total_bytes else 0.0
        spec = replace(
            spec,
            name=f"{spec.name}-mig-{mig.profile or mig.index}",
            label=mig.name,
            memory_bytes=mig.memory_total_bytes,
            # a MIG instance owns its memory slices and their share of the bandwidth (MIG user guide,
            # "Partitioning": memory slices include the memory controllers)
            bandwidth_gbps=round(spec.bandwidth_gbps * share, 1),
            max_per_node=1,
            nvml_names=(),
            aliases=(),
        )
    return ProbedGPU(
        index=parent.index,
        name=mig.name,
        memory_total_bytes=mig.memory_total_bytes,
        memory_free_bytes=mig.memory_free_bytes,
        spec=spec,
        nvml_index=parent.nvml_index,
        uuid=mig.uuid,
        memory_used_bytes=mig.memory_used_bytes,
        compute_capability=parent.compute_capability,
    )


def host_memory_bytes() -> int | None:
    """Total host RAM (vramplan/host.py reads more: available RAM, cgroup limits, Apple)."""
    from vramplan.host import read_host

    return read_host().memory_bytes


def probe_machine(
    nvml: Any | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    host: HostInfo | None = None,
    find_driver: Callable[[], str | None] | None = None,
) -> Machine:
    """The machine, from its parts (each one a seam for tests):

    - `nvml`: a pynvml-like module; None imports pynvml, unless `find_driver()` (default:
      `host.driver_absence`) says there is no NVIDIA driver, in which case NVML is not asked at all
      (and neither pynvml nor vramplan.nvml is imported);
    - `environ`: where CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER come from (default os.environ);
    - `host`: a `host.HostInfo` (default: read this host).
    Never raises: whatever fails becomes a note, and what could be read is still reported."""
    import os

    from vramplan.host import driver_absence, read_host

    env = os.environ if environ is None else environ
    notes: list[str] = []
    gpus: tuple[ProbedGPU, ...] = ()
    driver_version = cuda_driver_version = None
    absent = None if nvml is not None else (find_driver or driver_absence)()
    if absent is not None:
        notes.append(f"no NVIDIA driver found ({absent})")
    else:
        from vramplan import nvml as nv

        module, why = (nvml, None) if nvml is not None else nv.import_pynvml()
        if why:
            notes.append(why)
        if module is not None:
            try:
                reading = nv.read_nvml(module, env)
            except Exception as exc:  # a pynvml that misbehaves: report it, never crash a plan
                reading = nv.NvmlReading(notes=(f"reading the GPUs failed ({type(exc).__name__}: {exc})",))
            notes += reading.notes
            gpus = probed_gpus(reading.gpus, notes)
            driver_version, cuda_driver_version = reading.driver_version, reading.cuda_driver_version
    h = read_host() if host is None else host
    notes += h.notes
    machine = Machine(
        gpus=gpus,
        host_memory_bytes=h.memory_bytes,
        cpu_cores=h.cpu_cores,
        notes=tuple(notes),
        host_available_bytes=h.available_bytes,
        driver_version=driver_version,
        cuda_driver_version=cuda_driver_version,
        unified_memory_bytes=h.unified_memory_bytes,
        gpu_share_bytes=h.gpu_share_bytes,
    )
    return replace(machine, notes=machine.notes + plan_notes(machine))


def probed_gpus(read: Sequence[NvmlGPU], notes: list[str]) -> tuple[ProbedGPU, ...]:
    """The GPUs NVML read, each with its spec-table entry; a card matched only in part or not at all
    gets a note (once per name)."""
    gpus: list[ProbedGPU] = []
    told: set[str] = set()
    for d in read:
        spec, how = match_nvml_name(d.name, d.memory_total_bytes)
        if d.name not in told:
            told.add(d.name)
            if how:
                notes.append(how)
            elif spec is None:
                notes.append(
                    f"unknown card {d.name!r}: not in the GPU table, so plans use the memory NVML reports "
                    f"({d.memory_total_bytes / GiB:.2f} GiB) and its bandwidth is not known"
                )
        gpus.append(
            ProbedGPU(
                index=d.index,
                name=d.name,
                memory_total_bytes=d.memory_total_bytes,
                memory_free_bytes=d.memory_free_bytes,
                spec=spec,
                nvml_index=d.nvml_index,
                uuid=d.uuid,
                memory_used_bytes=d.memory_used_bytes,
                compute_capability=d.compute_capability,
                mig_enabled=d.mig_enabled,
                mig=tuple(
                    MigDevice(
                        m.index,
                        m.name,
                        m.uuid,
                        m.memory_total_bytes,
                        m.memory_free_bytes,
                        m.memory_used_bytes,
                        m.gpu_instance_id,
                        m.compute_instance_id,
                    )
                    for m in d.mig
                ),
            )
        )
    return tuple(gpus)


def plan_notes(machine: Machine) -> tuple[str, ...]:
    """What the probed GPUs mean for a plan, when that is not simply "N GPUs of one kind"."""
    plan = machine.plan_gpus()
    notes: list[str] = []
    mig = [g for g in machine.gpus if g.mig_enabled]
    if machine.gpus and not plan:
        notes.append("no GPU here can run CUDA work")
    elif mig and len(mig) == len(machine.gpus):
        m = plan[0]
        notes.append(
            f"GPU {m.index} is in MIG mode: one CUDA process uses one MIG device, so plans are for "
            f"{m.name} ({m.memory_total_bytes / GiB:.2f} GiB)"
        )
    elif mig:
        left = ", ".join(str(g.index) for g in mig)
        notes.append(f"GPU {left} in MIG mode left out of plans, which use {count(len(plan), 'whole GPU')}")
    names = sorted({g.name for g in plan})
    if len(names) > 1:
        small = min(plan, key=lambda g: g.memory_total_bytes)
        notes.append(
            f"the GPUs differ ({', '.join(names)}); plans treat all {len(plan)} as the smallest, "
            f"{small.name} ({small.memory_total_bytes / GiB:.2f} GiB)"
        )
    return tuple(notes)


def probe() -> Machine:
    """What this machine has: NVIDIA GPUs through NVML (pynvml, imported only when a driver may be
    there), host RAM and cores, Apple unified memory. Never raises: no driver or an NVML error gives
    a machine without GPUs and a note saying why."""
    return probe_machine()
