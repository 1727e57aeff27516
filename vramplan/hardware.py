"""GPUs: the spec table, names (`--gpu NAME[:COUNT]`, NVML names), and the machine the probe found.

Memory is the total the driver reports (nvidia-smi / NVML `memory.total`), not the marketing figure:
an "80 GB" H100 reports 81559 MiB. Bandwidth is the vendor's peak (GB/s, 10^9 bytes). `probe()` reads
this machine (NVML in vramplan/nvml.py, host RAM and Apple unified memory in vramplan/host.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from vramplan.errors import HardwareError

if TYPE_CHECKING:
    from vramplan.host import HostInfo

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class GPUSpec:
    """One card of the GPU spec table: memory as NVML reports it, bandwidth and features."""

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
    nvml_names: tuple[str, ...] = ()  # the names NVML / nvidia-smi report for the card
    source: str = ""  # where memory_bytes and bandwidth_gbps come from


# Memory: the MiB that nvidia-smi prints as the total (NVML memory.total / 2^20) in published
# `nvidia-smi` outputs of current drivers (R535 and later). Older drivers report a little less
# (T4 15109 MiB, V100 32510 MiB, A100-80GB 81252 MiB); the probe always plans with what the card
# itself reports. Bandwidth: the vendor datasheet. Each entry's `source` names both.
# One entry per card whose memory or bandwidth differs; SXM and PCIe forms with equal numbers share one.
GPU_SPECS: tuple[GPUSpec, ...] = (
    GPUSpec(
        "t4",
        "Tesla T4 16GB",
        15360 * MiB,
        320,
        (7, 5),
        False,
        False,
        "pcie",
        8,
        (),
        ("Tesla T4",),
        source='nvidia-smi "Tesla T4 ... 15360MiB"; 320 GB/s: NVIDIA T4 datasheet',
    ),
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
        ("Tesla V100-SXM2-32GB", "Tesla V100-PCIE-32GB", "Tesla V100-SXM2-32GB-LS"),
        source='nvidia-smi "Tesla V100-SXM2-32GB ... 32768MiB"; 900 GB/s SXM2 and PCIe: V100 datasheet',
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
        source='nvidia-smi "NVIDIA A10G ... 23028MiB" (AWS g5); 600 GB/s: A10 datasheet (same GDDR6 bus)',
    ),
    GPUSpec(
        "l4",
        "NVIDIA L4 24GB",
        23034 * MiB,
        300,
        (8, 9),
        True,
        False,
        "pcie",
        8,
        (),
        ("NVIDIA L4",),
        source='nvidia-smi "NVIDIA L4 ... 23034MiB"; 300 GB/s: NVIDIA L4 datasheet',
    ),
    GPUSpec(
        "l40s",
        "NVIDIA L40S 48GB",
        46068 * MiB,
        864,
        (8, 9),
        True,
        False,
        "pcie",
        8,
        (),
        ("NVIDIA L40S",),
        source='nvidia-smi "NVIDIA L40S ... 46068MiB"; 864 GB/s: NVIDIA L40S datasheet',
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
        source='nvidia-smi "NVIDIA A100-SXM4-40GB ... 40960MiB"; 1555 GB/s SXM4 and PCIe: A100 datasheet',
    ),
    GPUSpec(
        "a100-80gb",
        "NVIDIA A100 SXM4 80GB",
        81920 * MiB,
        2039,
        (8, 0),
        False,
        False,
        "nvlink",
        8,
        ("a100", "a100-80", "a100-sxm"),
        ("NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM-80GB"),
        source='nvidia-smi "NVIDIA A100-SXM4-80GB ... 81920MiB"; 2039 GB/s (SXM4): NVIDIA A100 datasheet',
    ),
    GPUSpec(
        "a100-80gb-pcie",
        "NVIDIA A100 80GB PCIe",
        81920 * MiB,
        1935,
        (8, 0),
        False,
        False,
        "pcie",
        8,
        ("a100-pcie",),
        ("NVIDIA A100 80GB PCIe",),
        source='nvidia-smi "NVIDIA A100 80GB PCIe ... 81920MiB"; 1935 GB/s (PCIe): NVIDIA A100 datasheet',
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
        source='nvidia-smi "NVIDIA H100 80GB HBM3 ... 81559MiB"; 3350 GB/s (SXM5): NVIDIA H100 datasheet',
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
        source='nvidia-smi "NVIDIA H100 PCIe ... 81559MiB"; 2000 GB/s: NVIDIA H100 datasheet',
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
        source='nvidia-smi "NVIDIA H100 NVL ... 95830MiB"; 3900 GB/s: NVIDIA H100 datasheet',
    ),
    GPUSpec(
        "h20",
        "NVIDIA H20 96GB",
        97871 * MiB,
        4000,
        (9, 0),
        True,
        False,
        "nvlink",
        8,
        (),
        ("NVIDIA H20",),
        source='nvidia-smi "NVIDIA H20 ... 97871MiB"; 4000 GB/s: NVIDIA H20 product brief',
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
        source='nvidia-smi "NVIDIA H200 ... 143771MiB"; 4800 GB/s: NVIDIA H200 datasheet',
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
        source='nvidia-smi "NVIDIA B200 ... 183359MiB"; 8000 GB/s: NVIDIA HGX B200 datasheet',
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
        source='nvidia-smi "NVIDIA GeForce RTX 3090 ... 24576MiB"; 936 GB/s: GeForce RTX 3090 specs',
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
        source="NVML total 25757220864 bytes (24564 MiB); 1008 GB/s: GeForce RTX 4090 specs",
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
        source='nvidia-smi "NVIDIA GeForce RTX 5090 ... 32607MiB"; 1792 GB/s: GeForce RTX 5090 specs',
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
        source='nvidia-smi "NVIDIA RTX A6000 ... 49140MiB"; 768 GB/s: NVIDIA RTX A6000 datasheet',
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
        source='nvidia-smi "NVIDIA RTX 6000 Ada Generation ... 49140MiB"; 960 GB/s: RTX 6000 Ada datasheet',
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
        source='rocm-smi "VRAM Total Memory (B): 206141652992" (196592 MiB); 5300 GB/s: MI300X datasheet',
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
    """The spec called `name`: a vramplan id or alias (any case), or a name as NVML reports it."""
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    if key in _BY_NAME:
        return _BY_NAME[key]
    by_nvml = _match_by_nvml_name(name)
    if by_nvml is not None:
        return by_nvml
    import difflib  # only for the did-you-mean hint of an error

    matches = [_BY_NAME[m].name for m in difflib.get_close_matches(key, list(_BY_NAME), n=10, cutoff=0.5)]
    family = [n for n, g in _BY_NAME.items() if n.split("-")[0] == key.split("-")[0]]
    same_family = [_BY_NAME[n].name for n in family]
    close = list(dict.fromkeys(matches[:1] + same_family + matches[1:]))[:3]  # one name per card
    hint = (
        f"; did you mean {', '.join(close)}?"
        if close
        else f"; known GPUs: {', '.join(g.name for g in GPU_SPECS)}"
    )
    raise HardwareError(f"unknown GPU {name!r}{hint}")


@dataclass(frozen=True)
class GPUChoice:
    """`--gpu NAME[:COUNT]`, parsed: a spec and how many of the card a node has."""

    spec: GPUSpec
    count: int


def parse_gpu(text: str) -> GPUChoice:
    """Parse `NAME[:COUNT]` (`h100-80gb:8`, `rtx-4090`)."""
    name, colon, count_text = text.partition(":")
    if not name.strip():
        raise HardwareError(f"--gpu {text!r} names no GPU; write NAME[:COUNT], e.g. h100-80gb:8")
    spec = gpu_spec(name)
    if not colon:
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


# --------------------------------------------------------------------------- NVML names -> specs

_BRAND_WORDS = {"nvidia", "tesla", "geforce", "amd", "instinct"}
# A name that matched only in part must report memory within this share of the table's, or it is
# another card that shares words with a table entry (an "RTX 4090 Laptop GPU" has 16 GB, not 24).
PARTIAL_MATCH_MEMORY_TOLERANCE = 0.05


def _tokens(name: str) -> tuple[str, ...]:
    words = re.split(r"[\s\-_/]+", name.strip().lower())
    return tuple(w for w in words if w and w not in _BRAND_WORDS)


def split_mig_name(name: str) -> tuple[str, str | None]:
    """A MIG device's name as its card's name and its profile: "NVIDIA A100-SXM4-40GB MIG 1g.5gb" ->
    ("NVIDIA A100-SXM4-40GB", "1g.5gb"); other names come back whole, with None."""
    m = re.match(r"^(.*?)\s+MIG\s+(\S+)\s*$", name.strip())
    return (m.group(1), m.group(2)) if m else (name.strip(), None)


def _match_by_nvml_name(name: str) -> GPUSpec | None:
    """Exact NVML name, then the same words without brand words, case and separators."""
    text = name.strip()
    for g in GPU_SPECS:
        if text in g.nvml_names:
            return g
    words = _tokens(text)
    for g in GPU_SPECS:
        if any(_tokens(n) == words for n in g.nvml_names):
            return g
    return None


def _contains(words: tuple[str, ...], part: tuple[str, ...]) -> bool:
    n = len(part)
    return n > 0 and any(words[i : i + n] == part for i in range(len(words) - n + 1))


def match_nvml_name(name: str, memory_total_bytes: int | None = None) -> tuple[GPUSpec | None, str | None]:
    """The table entry for a name NVML reports, and a note when the match is not exact.

    Exact name first, then the normalised name (no brand words, case or separators: old drivers
    say "A100-SXM4-40GB"), then the longest table name contained in it ("NVIDIA H200 NVL" holds
    "NVIDIA H200") if the card's memory agrees. A MIG device name maps to its parent card."""
    parent, profile = split_mig_name(name)
    exact = _match_by_nvml_name(parent)
    if exact is not None:
        return exact, None
    words = _tokens(parent)
    best: list[tuple[int, GPUSpec]] = []
    for g in GPU_SPECS:
        size = max((len(_tokens(n)) for n in g.nvml_names if _contains(words, _tokens(n))), default=0)
        if size:
            best.append((size, g))
    if not best:
        return None, None
    top = max(size for size, _ in best)
    winners = [g for size, g in best if size == top]
    if len(winners) != 1:
        return None, None
    spec = winners[0]
    if memory_total_bytes is not None and profile is None:
        if abs(memory_total_bytes - spec.memory_bytes) > PARTIAL_MATCH_MEMORY_TOLERANCE * spec.memory_bytes:
            return None, None
    return spec, f"{parent!r} is not in the GPU table; using {spec.name} ({spec.label}), the closest entry"


def spec_for_nvml_name(name: str, memory_total_bytes: int | None = None) -> GPUSpec | None:
    return match_nvml_name(name, memory_total_bytes)[0]


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
            gpus, driver_version = reading.gpus, reading.driver_version
            cuda_driver_version = reading.cuda_driver_version
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
        notes.append(f"GPU {left} in MIG mode left out of plans, which use the {len(plan)} whole GPU(s)")
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
