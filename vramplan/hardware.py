"""GPUs: the spec table, parsing `--gpu NAME[:COUNT]`, and (later) the NVML probe.

Memory is the total the driver reports (nvidia-smi / NVML `memory.total`), not the marketing figure:
an "80 GB" H100 reports 81559 MiB. Bandwidth is the vendor's peak (GB/s, 10^9 bytes).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from vramplan.errors import HardwareError

MiB = 1 << 20


@dataclass(frozen=True)
class GPUSpec:
    name: str  # vramplan's id: lower case with dashes
    label: str  # what people call it
    memory_bytes: int  # as NVML reports memory.total
    bandwidth_gbps: float  # peak memory bandwidth, GB/s
    compute_capability: tuple[int, int] | None  # None for non-NVIDIA cards
    fp8: bool  # native FP8 tensor cores (Ada, Hopper, Blackwell; CDNA3)
    fp4: bool  # native FP4 tensor cores (Blackwell)
    interconnect: str  # nvlink, pcie, infinity-fabric
    max_per_node: int  # most cards one server takes
    aliases: tuple[str, ...] = ()
    nvml_names: tuple[str, ...] = ()


# Memory totals: nvidia-smi output of the cards (MiB). Bandwidth: NVIDIA / AMD datasheets.
GPU_SPECS: tuple[GPUSpec, ...] = (
    GPUSpec("t4", "Tesla T4 16GB", 15360 * MiB, 320, (7, 5), False, False, "pcie", 8, (), ("Tesla T4",)),
    GPUSpec(
        "v100-32gb",
        "Tesla V100 SXM2 32GB",
        32768 * MiB,
        900,
        (7, 0),
        False,
        False,
        "nvlink",
        8,
        ("v100",),
        ("Tesla V100-SXM2-32GB", "Tesla V100-PCIE-32GB"),
    ),
    GPUSpec(
        "a10g",
        "NVIDIA A10G 24GB",
        23028 * MiB,
        600,
        (8, 6),
        False,
        False,
        "pcie",
        8,
        ("a10",),
        ("NVIDIA A10G", "NVIDIA A10"),
    ),
    GPUSpec("l4", "NVIDIA L4 24GB", 23034 * MiB, 300, (8, 9), True, False, "pcie", 8, (), ("NVIDIA L4",)),
    GPUSpec(
        "l40s", "NVIDIA L40S 48GB", 46068 * MiB, 864, (8, 9), True, False, "pcie", 8, (), ("NVIDIA L40S",)
    ),
    GPUSpec(
        "a100-40gb",
        "NVIDIA A100 40GB",
        40960 * MiB,
        1555,
        (8, 0),
        False,
        False,
        "nvlink",
        8,
        ("a100-40",),
        ("NVIDIA A100-SXM4-40GB", "NVIDIA A100-PCIE-40GB"),
    ),
    GPUSpec(
        "a100-80gb",
        "NVIDIA A100 80GB",
        81920 * MiB,
        2039,
        (8, 0),
        False,
        False,
        "nvlink",
        8,
        ("a100", "a100-80"),
        ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe"),
    ),
    GPUSpec(
        "h100-80gb",
        "NVIDIA H100 SXM 80GB",
        81559 * MiB,
        3350,
        (9, 0),
        True,
        False,
        "nvlink",
        8,
        ("h100", "h100-sxm"),
        ("NVIDIA H100 80GB HBM3",),
    ),
    GPUSpec(
        "h100-pcie",
        "NVIDIA H100 PCIe 80GB",
        81559 * MiB,
        2000,
        (9, 0),
        True,
        False,
        "pcie",
        8,
        (),
        ("NVIDIA H100 PCIe",),
    ),
    GPUSpec(
        "h100-nvl",
        "NVIDIA H100 NVL 94GB",
        95830 * MiB,
        3900,
        (9, 0),
        True,
        False,
        "nvlink",
        8,
        (),
        ("NVIDIA H100 NVL",),
    ),
    GPUSpec(
        "h20", "NVIDIA H20 96GB", 97871 * MiB, 4000, (9, 0), True, False, "nvlink", 8, (), ("NVIDIA H20",)
    ),
    GPUSpec(
        "h200",
        "NVIDIA H200 141GB",
        143771 * MiB,
        4800,
        (9, 0),
        True,
        False,
        "nvlink",
        8,
        ("h200-141gb", "h200-sxm"),
        ("NVIDIA H200",),
    ),
    GPUSpec(
        "b200",
        "NVIDIA B200 180GB",
        183359 * MiB,
        8000,
        (10, 0),
        True,
        True,
        "nvlink",
        8,
        (),
        ("NVIDIA B200",),
    ),
    GPUSpec(
        "rtx-3090",
        "GeForce RTX 3090 24GB",
        24576 * MiB,
        936,
        (8, 6),
        False,
        False,
        "pcie",
        8,
        ("3090",),
        ("NVIDIA GeForce RTX 3090",),
    ),
    GPUSpec(
        "rtx-4090",
        "GeForce RTX 4090 24GB",
        24564 * MiB,
        1008,
        (8, 9),
        True,
        False,
        "pcie",
        8,
        ("4090",),
        ("NVIDIA GeForce RTX 4090",),
    ),
    GPUSpec(
        "rtx-5090",
        "GeForce RTX 5090 32GB",
        32607 * MiB,
        1792,
        (12, 0),
        True,
        True,
        "pcie",
        8,
        ("5090",),
        ("NVIDIA GeForce RTX 5090",),
    ),
    GPUSpec(
        "rtx-a6000",
        "NVIDIA RTX A6000 48GB",
        49140 * MiB,
        768,
        (8, 6),
        False,
        False,
        "pcie",
        8,
        ("a6000",),
        ("NVIDIA RTX A6000",),
    ),
    GPUSpec(
        "rtx-6000-ada",
        "NVIDIA RTX 6000 Ada 48GB",
        49140 * MiB,
        960,
        (8, 9),
        True,
        False,
        "pcie",
        8,
        ("6000-ada",),
        ("NVIDIA RTX 6000 Ada Generation",),
    ),
    GPUSpec(
        "mi300x",
        "AMD Instinct MI300X 192GB",
        196592 * MiB,
        5300,
        None,
        True,
        False,
        "infinity-fabric",
        8,
        (),
        ("AMD Instinct MI300X",),
    ),
)


def _index() -> dict[str, GPUSpec]:
    idx: dict[str, GPUSpec] = {}
    for g in GPU_SPECS:
        for n in (g.name, *g.aliases):
            idx[n] = g
    return idx


_BY_NAME = _index()


def gpu_spec(name: str) -> GPUSpec:
    """The spec called `name` (a vramplan id or alias, any case)."""
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    if key in _BY_NAME:
        return _BY_NAME[key]
    matches = difflib.get_close_matches(key, list(_BY_NAME), n=10, cutoff=0.5)
    close = list(dict.fromkeys(_BY_NAME[m].name for m in matches))[:3]  # one name per card
    hint = (
        f"; did you mean {', '.join(close)}?"
        if close
        else f"; known GPUs: {', '.join(g.name for g in GPU_SPECS)}"
    )
    raise HardwareError(f"unknown GPU {name!r}{hint}")


@dataclass(frozen=True)
class GPUChoice:
    spec: GPUSpec
    count: int


def parse_gpu(text: str) -> GPUChoice:
    """Parse `NAME[:COUNT]` (`h100-80gb:8`, `rtx-4090`)."""
    name, _, count_text = text.partition(":")
    spec = gpu_spec(name)
    if not count_text:
        return GPUChoice(spec, 1)
    try:
        count = int(count_text)
    except ValueError:
        raise HardwareError(f"GPU count in {text!r} must be a whole number") from None
    if count <= 0:
        raise HardwareError(f"GPU count in {text!r} must be at least 1")
    if count > spec.max_per_node:
        raise HardwareError(
            f"{spec.name} servers hold at most {spec.max_per_node} GPUs per node, asked for {count}; "
            "use --nodes for more"
        )
    return GPUChoice(spec, count)


# --------------------------------------------------------------------------- the local machine


@dataclass(frozen=True)
class ProbedGPU:
    index: int
    name: str  # as NVML reports it, e.g. "NVIDIA H100 80GB HBM3"
    memory_total_bytes: int
    memory_free_bytes: int
    spec: GPUSpec | None  # the spec-table entry the name maps to, if any


@dataclass(frozen=True)
class Machine:
    gpus: tuple[ProbedGPU, ...]
    host_memory_bytes: int | None
    cpu_cores: int | None
    notes: tuple[str, ...] = ()

    def gpu_spec(self) -> GPUSpec:
        """The spec to plan with: the table entry of the first GPU, or one made from its NVML memory."""
        g = self.gpus[0]
        if g.spec is not None:
            return g.spec
        return GPUSpec(
            name=g.name.lower().replace(" ", "-"),
            label=g.name,
            memory_bytes=g.memory_total_bytes,
            bandwidth_gbps=0.0,
            compute_capability=None,
            fp8=False,
            fp4=False,
            interconnect="pcie",
            max_per_node=len(self.gpus),
        )


def spec_for_nvml_name(name: str) -> GPUSpec | None:
    for g in GPU_SPECS:
        if name in g.nvml_names:
            return g
    return None


def host_memory_bytes() -> int | None:
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def probe() -> Machine:
    """What this machine has: NVIDIA GPUs through NVML (pynvml, imported here only), host RAM, cores.
    Never raises: no driver or an NVML error gives a machine without GPUs and a note saying why."""
    import os

    notes: list[str] = []
    gpus: list[ProbedGPU] = []
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            for i in range(pynvml.nvmlDeviceGetCount()):
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
                name = pynvml.nvmlDeviceGetName(h)
                name = name.decode() if isinstance(name, bytes) else name
                mem = pynvml.nvmlDeviceGetMemoryInfo(h)
                gpus.append(ProbedGPU(i, name, int(mem.total), int(mem.free), spec_for_nvml_name(name)))
        finally:
            pynvml.nvmlShutdown()
    except Exception as exc:  # no driver, no library, or an NVML failure
        notes.append(f"no NVIDIA GPU found ({type(exc).__name__}: {exc})")
    return Machine(tuple(gpus), host_memory_bytes(), os.cpu_count(), tuple(notes))
