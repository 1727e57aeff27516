"""The host: RAM (total, available, a container's cgroup limit), CPU cores, on Apple silicon the
unified memory and the share of it Metal lets the GPU use, and whether an NVIDIA driver is installed
(so that a machine without one never imports pynvml or vramplan.nvml). Every reader is a seam for
tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

GiB = 1 << 30
MiB = 1 << 20

# macOS's default Metal working set (MTLDevice.recommendedMaxWorkingSetSize) is two thirds of the
# RAM on Macs with up to 32 GB and three quarters above; Apple does not document the rule, the
# numbers are what Metal reports: 10922.67 MB on 16 GB, 21845.34 MB on 32 GB (2/3), 73728 MB on
# 96 GB (3/4) (ggml_metal_init logs, MiB then: llama-cpp-python #687, llama.cpp #2011 and #3213);
# 17179.89 MB (16 GiB, 2/3) on a 24 GB Apple M2 and 28991.03 MB (27 GiB, 3/4) on a 36 GB Apple M4
# Max (ggml_metal_device_init logs of llama.cpp b7690 and llama-cpp-python 0.3.34, which print
# 10^6 bytes as MB; the tests' Apple M4 log, 11453.25 MB on 16 GB, is 2/3 in those units). The sysctl
# iogpu.wired_limit_mb (MiB; the older debug.iogpu.wired_limit, in bytes, where it is missing)
# overrides it when not 0: 114688 gives 112.00 GiB (antirez/ds4 PR #893). Newer macOS releases may
# allow more (107.52 GiB of 128 GiB measured on macOS 26, same PR); the rule here is the conservative one.
METAL_SMALL_MAC_BYTES = 32 * GiB


@dataclass(frozen=True)
class HostInfo:
    """The host as read: RAM (total, available), cores, Apple unified memory, and notes."""

    memory_bytes: int | None
    available_bytes: int | None
    cpu_cores: int | None
    unified_memory_bytes: int | None = None
    gpu_share_bytes: int | None = None
    notes: tuple[str, ...] = ()


def _read_text(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read()


def meminfo(read_text: Callable[[str], str] = _read_text) -> tuple[int | None, int | None]:
    """MemTotal and MemAvailable of /proc/meminfo (kB there, bytes here)."""
    try:
        text = read_text("/proc/meminfo")
    except OSError:
        return None, None
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if key in ("MemTotal", "MemAvailable") and parts and parts[0].isdigit():
            values[key] = int(parts[0]) * 1024
    return values.get("MemTotal"), values.get("MemAvailable")


def sysconf_memory() -> tuple[int | None, int | None]:
    """Total and free physical pages x page size, where /proc/meminfo is missing."""
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        total = page * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None, None
    try:
        free: int | None = page * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        free = None
    return total, free


def cgroup_limit(read_text: Callable[[str], str] = _read_text) -> int | None:
    """The memory limit of this process's cgroup (v2 memory.max, v1 memory.limit_in_bytes); None
    when there is none ("max", or v1's near-2^63 "unlimited")."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = read_text(path).strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            return int(text)
        return None
    return None


def cpu_cores() -> int | None:
    """The CPUs this process may run on (its affinity mask), else all of them."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def metal_gpu_share(unified_bytes: int, wired_limit_mb: int | None) -> int:
    """What Metal lets the GPU use of `unified_bytes`: iogpu.wired_limit_mb when set (not 0),
    else macOS's default working set (see METAL_SMALL_MAC_BYTES)."""
    if wired_limit_mb:
        return wired_limit_mb * MiB
    if unified_bytes <= METAL_SMALL_MAC_BYTES:
        return unified_bytes * 2 // 3
    return unified_bytes * 3 // 4


def metal_rule_words(unified_bytes: int) -> str:
    """Which default of `metal_gpu_share` applies to `unified_bytes`, in words."""
    if unified_bytes <= METAL_SMALL_MAC_BYTES:
        return "macOS default: 2/3 of RAM up to 32 GiB"
    return "macOS default: 3/4 of RAM above 32 GiB"


def apple_memory(sysctl: Callable[[str], int | None]) -> tuple[int | None, int | None, tuple[str, ...]]:
    """Unified memory (hw.memsize) and the GPU's share of it, read through `sysctl(name)`."""
    total = sysctl("hw.memsize")
    if not total:
        return None, None, ("Apple silicon: sysctl hw.memsize could not be read",)
    limit_mb = sysctl("iogpu.wired_limit_mb")
    if limit_mb is None:
        old = sysctl("debug.iogpu.wired_limit")  # the older name, in bytes
        limit_mb = old // MiB if old else None
    share = metal_gpu_share(total, limit_mb)
    how = f"iogpu.wired_limit_mb = {limit_mb}" if limit_mb else metal_rule_words(total)
    note = (
        f"Apple silicon: Metal lets the GPU use {share / GiB:.2f} GiB of {total / GiB:.2f} GiB "
        f"unified memory ({how}); llama.cpp and Ollama place layers there"
    )
    return total, share, (note,)


def _sysctl_int(name: str) -> int | None:  # pragma: no cover - macOS only
    import ctypes

    libc = ctypes.CDLL(None)
    value = ctypes.c_uint64(0)
    size = ctypes.c_size_t(ctypes.sizeof(value))
    rc = libc.sysctlbyname(name.encode(), ctypes.byref(value), ctypes.byref(size), None, ctypes.c_size_t(0))
    return int(value.value) if rc == 0 else None


def is_apple_silicon(platform: str = sys.platform, machine: str | None = None) -> bool:
    return platform == "darwin" and (machine if machine is not None else os.uname().machine) == "arm64"


def read_host(
    platform: str = sys.platform,
    machine: str | None = None,
    read_text: Callable[[str], str] = _read_text,
    sysctl: Callable[[str], int | None] | None = None,
) -> HostInfo:
    """This host's RAM and cores (Linux: /proc/meminfo and the cgroup limit; elsewhere sysconf)."""
    notes: list[str] = []
    total, available = meminfo(read_text) if platform.startswith("linux") else (None, None)
    if total is None:
        total, available = sysconf_memory()
    if platform.startswith("linux"):
        limit = cgroup_limit(read_text)
        if limit is not None and total is not None and limit < total:
            notes.append(
                f"this container may use {limit / GiB:.2f} GiB of the host's {total / GiB:.2f} GiB "
                "(cgroup memory limit); plans use the limit"
            )
            total = limit
            available = min(available, limit) if available is not None else limit
    unified = share = None
    if is_apple_silicon(platform, machine):
        unified, share, apple_notes = apple_memory(sysctl or _sysctl_int)
        notes += apple_notes
        total = unified or total
    return HostInfo(total, available, cpu_cores(), unified, share, tuple(notes))


# --------------------------------------------------------------------------- an NVIDIA driver?

NVML_LIBRARY = "libnvidia-ml.so.1"
# Where dlopen finds the library besides LD_LIBRARY_PATH: the ld.so cache and the usual directories;
# WSL2 ships it in /usr/lib/wsl/lib and has no /proc/driver/nvidia.
LIBRARY_DIRS = (
    "/usr/lib/wsl/lib",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/lib64",
    "/lib",
    "/usr/local/nvidia/lib64",
)
LD_SO_CACHE = "/etc/ld.so.cache"


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def driver_absence(
    platform: str = sys.platform,
    exists: Callable[[str], bool] = os.path.exists,
    read_bytes: Callable[[str], bytes] = _read_bytes,
    environ: Mapping[str, str] = os.environ,
) -> str | None:
    """Why NVML cannot answer here, or None when it may (then ask it).

    Linux: the loaded kernel module shows /proc/driver/nvidia (containers get it too); WSL2 has none
    but ships libnvidia-ml.so.1. Without either there is no driver to ask. macOS has no NVIDIA driver;
    elsewhere (Windows) NVML itself is asked."""
    if platform == "darwin":
        return "macOS has no NVIDIA driver"
    if not platform.startswith("linux"):
        return None
    if exists("/proc/driver/nvidia") or exists("/dev/nvidiactl"):
        return None
    dirs = [d for d in environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    if any(exists(os.path.join(d, NVML_LIBRARY)) for d in (*dirs, *LIBRARY_DIRS)):
        return None
    try:
        if NVML_LIBRARY.encode() in read_bytes(LD_SO_CACHE):
            return None
    except OSError:
        pass
    return f"/proc/driver/nvidia is absent and {NVML_LIBRARY} is not installed"
