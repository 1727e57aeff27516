"""NVIDIA GPUs through NVML, and which of them CUDA_VISIBLE_DEVICES leaves to a CUDA process.

`read_nvml(nvml, environ)` reads the devices as NVML reports them (names, memory, MIG devices); which
entry of the GPU table a name is, is vramplan/hardware.py's business, so this module imports no other
part of vramplan. It takes any pynvml-like module: pynvml itself, or in tests a stand-in that
replays recorded answers of real cards and raises pynvml's own `NVMLError`s. A failing call costs
only what it reads: a device that cannot be read is left out with a note, the others are reported.
`host.driver_absence()` decides first, from a few files, whether asking NVML can succeed at all, so a
machine without an NVIDIA driver never imports pynvml, nor this module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def import_pynvml() -> tuple[Any | None, str | None]:
    try:
        import pynvml
    except ImportError:
        return None, "nvidia-ml-py (pynvml) is not installed, so GPUs cannot be read"
    return pynvml, None


@dataclass(frozen=True)
class NvmlMig:
    """One MIG device as NVML reports it (the fields of `hardware.MigDevice`, in its order)."""

    index: int  # under its parent (nvmlDeviceGetMigDeviceHandleByIndex)
    name: str
    uuid: str | None
    memory_total_bytes: int
    memory_free_bytes: int
    memory_used_bytes: int
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None


@dataclass(frozen=True)
class NvmlGPU:
    """A GPU that CUDA_VISIBLE_DEVICES leaves visible, as NVML reports it."""

    index: int  # the index CUDA gives it
    nvml_index: int
    name: str
    uuid: str | None
    memory_total_bytes: int
    memory_free_bytes: int
    memory_used_bytes: int | None
    compute_capability: tuple[int, int] | None
    mig_enabled: bool
    mig: tuple[NvmlMig, ...]  # the MIG devices visible to this process


@dataclass(frozen=True)
class NvmlReading:
    gpus: tuple[NvmlGPU, ...] = ()
    driver_version: str | None = None
    cuda_driver_version: str | None = None  # "12.4"
    notes: tuple[str, ...] = ()


@dataclass
class _Device:
    """One NVML device as read, before CUDA_VISIBLE_DEVICES picks from them."""

    nvml_index: int
    name: str | None = None
    uuid: str | None = None
    total: int | None = None
    free: int | None = None
    used: int | None = None
    cc: tuple[int, int] | None = None
    mig_enabled: bool = False
    mig: list[NvmlMig] = field(default_factory=list)
    failed: bool = False


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _error_code_name(nvml: Any, exc: BaseException) -> str | None:
    value = getattr(exc, "value", None)
    for name in dir(nvml):
        if name.startswith("NVML_ERROR_") and getattr(nvml, name) == value:
            return name
    return None


def _why(nvml: Any, exc: BaseException) -> str:
    code = _error_code_name(nvml, exc)
    return f"{exc}, {code}" if code else f"{type(exc).__name__}: {exc}"


def _is(nvml: Any, exc: BaseException, code_name: str) -> bool:
    return getattr(exc, "value", None) == getattr(nvml, code_name, object())


def _init_failure(nvml: Any, exc: BaseException) -> str:
    why = _why(nvml, exc)
    if _is(nvml, exc, "NVML_ERROR_LIBRARY_NOT_FOUND"):
        return f"no NVIDIA driver found (NVML: {why})"
    if _is(nvml, exc, "NVML_ERROR_DRIVER_NOT_LOADED"):
        return f"the NVIDIA driver is installed but not loaded (NVML: {why})"
    if _is(nvml, exc, "NVML_ERROR_LIB_RM_VERSION_MISMATCH"):
        return f"the NVIDIA driver and its NVML library differ in version; reboot or reload it (NVML: {why})"
    if _is(nvml, exc, "NVML_ERROR_NO_PERMISSION"):
        return f"no permission to read the GPUs (NVML: {why})"
    return f"NVML could not start (NVML: {why})"


def cuda_version_text(version: int) -> str:
    """NVML's CUDA driver version integer (12040) as CUDA writes it ("12.4"): 1000 x major + 10 x minor
    (nvml.h, nvmlSystemGetCudaDriverVersion)."""
    return f"{version // 1000}.{version % 1000 // 10}"


def read_nvml(nvml: Any, environ: Mapping[str, str]) -> NvmlReading:
    """Every GPU NVML reports that CUDA_VISIBLE_DEVICES leaves visible, with its MIG devices."""
    error: type[BaseException] = getattr(nvml, "NVMLError", Exception)
    notes: list[str] = []
    try:
        nvml.nvmlInit()
    except error as exc:
        return NvmlReading(notes=(_init_failure(nvml, exc),))
    driver = cuda = None
    devices: list[_Device] = []
    try:
        try:
            driver = _text(nvml.nvmlSystemGetDriverVersion())
        except error as exc:
            notes.append(f"NVML could not tell the driver version ({_why(nvml, exc)})")
        try:
            cuda = cuda_version_text(int(nvml.nvmlSystemGetCudaDriverVersion()))
        except error as exc:
            notes.append(f"NVML could not tell the CUDA driver version ({_why(nvml, exc)})")
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except error as exc:
            notes.append(f"NVML could not count the GPUs ({_why(nvml, exc)}); no GPU is reported")
            count = 0
        for i in range(count):
            devices.append(_read_device(nvml, error, i, notes))
    finally:
        try:
            nvml.nvmlShutdown()
        except error:
            pass
    chosen, visibility_notes = visible_devices(devices, environ.get("CUDA_VISIBLE_DEVICES"))
    notes += visibility_notes
    gpus = _probed(chosen, notes)
    names = {g.name for g in gpus if not g.mig_enabled}
    explicit_order = environ.get("CUDA_DEVICE_ORDER", "") == "PCI_BUS_ID"
    if len(names) > 1 and not explicit_order:
        notes.append(
            "the GPUs differ and CUDA_DEVICE_ORDER is not PCI_BUS_ID: CUDA numbers the fastest GPU "
            "first, while the indices here follow NVML's PCI bus order"
        )
    return NvmlReading(tuple(gpus), driver, cuda, tuple(notes))


def _read_device(nvml: Any, error: type[BaseException], i: int, notes: list[str]) -> _Device:
    d = _Device(i)
    step = "nvmlDeviceGetHandleByIndex"
    try:
        h = nvml.nvmlDeviceGetHandleByIndex(i)
        try:
            d.name = _text(nvml.nvmlDeviceGetName(h))
        except error as exc:
            notes.append(f"NVML device {i}: nvmlDeviceGetName failed ({_why(nvml, exc)})")
        try:
            d.uuid = _text(nvml.nvmlDeviceGetUUID(h))
        except error as exc:
            notes.append(f"NVML device {i}: nvmlDeviceGetUUID failed ({_why(nvml, exc)})")
        step = "nvmlDeviceGetMemoryInfo"
        mem = nvml.nvmlDeviceGetMemoryInfo(h)
        d.total, d.free, d.used = int(mem.total), int(mem.free), int(mem.used)
        try:
            major, minor = nvml.nvmlDeviceGetCudaComputeCapability(h)
            d.cc = (int(major), int(minor))
        except error as exc:
            notes.append(f"NVML device {i}: nvmlDeviceGetCudaComputeCapability failed ({_why(nvml, exc)})")
        _read_mig(nvml, error, h, d, notes)
    except error as exc:
        d.failed = True
        what = f"{i} ({d.name})" if d.name else f"{i}"
        notes.append(
            f"NVML device {what}: {step} failed ({_why(nvml, exc)}); it is left out, "
            "the other GPUs are reported"
        )
    return d


def _read_mig(nvml: Any, error: type[BaseException], h: Any, d: _Device, notes: list[str]) -> None:
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(h)
    except error as exc:
        quiet = ("NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_FUNCTION_NOT_FOUND")  # no MIG on this GPU / driver
        if not any(_is(nvml, exc, code) for code in quiet):
            notes.append(f"NVML device {d.nvml_index}: nvmlDeviceGetMigMode failed ({_why(nvml, exc)})")
        return
    if current != getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1):
        return
    d.mig_enabled = True
    try:
        slots = int(nvml.nvmlDeviceGetMaxMigDeviceCount(h))
    except error as exc:
        notes.append(
            f"NVML device {d.nvml_index}: MIG is on but its devices cannot be listed ({_why(nvml, exc)})"
        )
        return
    for j in range(slots):
        try:
            mh = nvml.nvmlDeviceGetMigDeviceHandleByIndex(h, j)
        except error as exc:
            if not _is(nvml, exc, "NVML_ERROR_NOT_FOUND") and not _is(
                nvml, exc, "NVML_ERROR_INVALID_ARGUMENT"
            ):
                notes.append(f"NVML device {d.nvml_index}: MIG device {j} cannot be read ({_why(nvml, exc)})")
            continue
        try:
            mem = nvml.nvmlDeviceGetMemoryInfo(mh)
            name = _text(nvml.nvmlDeviceGetName(mh))
            uuid = _text(nvml.nvmlDeviceGetUUID(mh))
        except error as exc:
            notes.append(f"NVML device {d.nvml_index}: MIG device {j} cannot be read ({_why(nvml, exc)})")
            continue
        gi = ci = None
        try:
            gi = int(nvml.nvmlDeviceGetGpuInstanceId(mh))
            ci = int(nvml.nvmlDeviceGetComputeInstanceId(mh))
        except error:
            pass
        d.mig.append(NvmlMig(j, name, uuid, int(mem.total), int(mem.free), int(mem.used), gi, ci))


# --------------------------------------------------------------------------- CUDA_VISIBLE_DEVICES

_OLD_MIG = re.compile(r"^MIG-(GPU-[0-9A-Fa-f-]+)/(\d+)/(\d+)$")


def visible_devices(
    devices: list[_Device], value: str | None
) -> tuple[list[tuple[_Device, tuple[NvmlMig, ...] | None]], list[str]]:
    """The devices a CUDA process sees, in its order, each with the MIG devices it sees of it (None:
    all of them). The CUDA programming guide's rules (CUDA environment variables): indices or GPU UUIDs
    (unique prefixes allowed), MIG UUIDs (`MIG-<uuid>`, or `MIG-GPU-<uuid>/<gi>/<ci>` before R470);
    the list stops at the first entry that names no device ("0,2,-1,1" shows 0 and 2); an empty value
    shows none."""
    if value is None:
        return [(d, None) for d in devices], []
    if not value.strip():
        return [], ["CUDA_VISIBLE_DEVICES is empty, so CUDA sees no GPU"]
    chosen: list[tuple[_Device, tuple[NvmlMig, ...] | None]] = []
    seen: set[int] = set()
    for raw in value.split(","):
        entry = raw.strip()
        found = _resolve(devices, entry)
        if found is None or found[0].nvml_index in seen:
            why = "names a GPU twice" if found is not None else "names no GPU here"
            shown = ", ".join(str(d.nvml_index) for d, _ in chosen) or "none"
            return chosen, [
                f"CUDA_VISIBLE_DEVICES={value!r}: {entry!r} {why}; CUDA stops the list there "
                f"(NVML devices visible: {shown})"
            ]
        seen.add(found[0].nvml_index)
        chosen.append(found)
    return chosen, []


def _resolve(devices: list[_Device], entry: str) -> tuple[_Device, tuple[NvmlMig, ...] | None] | None:
    if entry.isascii() and entry.isdigit():  # CUDA reads ASCII digits only ("٣" or "３" name no GPU)
        i = int(entry)
        return (devices[i], None) if i < len(devices) else None
    if entry.startswith("GPU-"):
        hits = [d for d in devices if d.uuid and d.uuid.startswith(entry)]
        return (hits[0], None) if len(hits) == 1 else None
    old = _OLD_MIG.match(entry)
    if old:
        parents = [d for d in devices if d.uuid and d.uuid.startswith(old.group(1))]
        gi, ci = int(old.group(2)), int(old.group(3))
        for d in parents[:1] if len(parents) == 1 else []:
            for m in d.mig:
                if (m.gpu_instance_id, m.compute_instance_id) == (gi, ci):
                    return d, (m,)
        return None
    if entry.startswith("MIG-"):
        migs = [(d, m) for d in devices for m in d.mig if m.uuid and m.uuid.startswith(entry)]
        return (migs[0][0], (migs[0][1],)) if len(migs) == 1 else None
    return None


def _probed(chosen: list[tuple[_Device, tuple[NvmlMig, ...] | None]], notes: list[str]) -> list[NvmlGPU]:
    gpus: list[NvmlGPU] = []
    for cuda_index, (d, mig) in enumerate(chosen):
        if d.failed or d.total is None:
            continue
        name = d.name or f"NVIDIA GPU {d.nvml_index}"
        mig_devices = tuple(d.mig) if mig is None else mig
        if d.mig_enabled and not mig_devices:
            notes.append(
                f"GPU {cuda_index} ({name}) is in MIG mode with no MIG device, so CUDA cannot use it"
            )
        gpus.append(
            NvmlGPU(
                index=cuda_index,
                nvml_index=d.nvml_index,
                name=name,
                uuid=d.uuid,
                memory_total_bytes=d.total,
                memory_free_bytes=d.free if d.free is not None else d.total,
                memory_used_bytes=d.used,
                compute_capability=d.cc,
                mig_enabled=d.mig_enabled,
                mig=mig_devices,
            )
        )
    return gpus
