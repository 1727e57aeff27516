"""A pynvml stand-in that answers from a recording (tests/fixtures/nvml/*.json).

The recordings hold what NVML answers on real cards: the names and memory totals (bytes) that
nvidia-smi / NVML report for them, driver and CUDA versions of real driver releases, MIG device
names, sizes and instance ids as nvidia-smi lists them. Errors are raised as pynvml's own
`NVMLError(code)` with pynvml's real error codes, named in the recording ("NVML_ERROR_GPU_IS_LOST").

Recording format:
    {"about": str, "init_error": "NVML_ERROR_..." (optional), "driver_version": str,
     "cuda_driver_version": int, "devices": [
        {"name", "uuid", "memory": {"total", "free", "used"}, "compute_capability": [major, minor],
         "mig_mode": [current, pending] or null (NVML_ERROR_NOT_SUPPORTED), "max_mig_devices": int,
         "mig_devices": [{"index", "name", "uuid", "memory", "gpu_instance_id", "compute_instance_id"}],
         "errors": {"nvmlDeviceGetMemoryInfo": "NVML_ERROR_..."}}]}
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "nvml"


def recording(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


class FakeNVML:
    """The pynvml functions vramplan calls, answering from one recording."""

    NVMLError = pynvml.NVMLError

    def __init__(self, rec: dict[str, Any] | str) -> None:
        self.rec = recording(rec) if isinstance(rec, str) else rec
        self.calls: list[str] = []
        self.initialised = False

    # -- helpers
    def _raise(self, code_name: str) -> None:
        raise pynvml.NVMLError(getattr(pynvml, code_name))

    def _device(self, handle: tuple[Any, ...]) -> dict[str, Any]:
        return self.rec["devices"][handle[1]]

    def _entry(self, handle: tuple[Any, ...], call: str) -> dict[str, Any]:
        self.calls.append(call)
        if not self.initialised:
            self._raise("NVML_ERROR_UNINITIALIZED")
        dev = self._device(handle)
        entry = dev if handle[0] == "gpu" else dev["mig_devices"][handle[2]]
        err = entry.get("errors", {}).get(call)
        if err:
            self._raise(err)
        return entry

    # -- system
    def nvmlInit(self) -> None:
        self.calls.append("nvmlInit")
        if self.rec.get("init_error"):
            self._raise(self.rec["init_error"])
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.calls.append("nvmlShutdown")
        self.initialised = False

    def nvmlSystemGetDriverVersion(self) -> str:
        return str(self.rec["driver_version"])

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return int(self.rec["cuda_driver_version"])

    def nvmlDeviceGetCount(self) -> int:
        self.calls.append("nvmlDeviceGetCount")
        return len(self.rec["devices"])

    # -- devices
    def nvmlDeviceGetHandleByIndex(self, i: int) -> tuple[Any, ...]:
        if not 0 <= i < len(self.rec["devices"]):
            self._raise("NVML_ERROR_INVALID_ARGUMENT")
        self._entry(("gpu", i), "nvmlDeviceGetHandleByIndex")
        return ("gpu", i)

    def nvmlDeviceGetName(self, h: tuple[Any, ...]) -> str:
        return str(self._entry(h, "nvmlDeviceGetName")["name"])

    def nvmlDeviceGetUUID(self, h: tuple[Any, ...]) -> str:
        return str(self._entry(h, "nvmlDeviceGetUUID")["uuid"])

    def nvmlDeviceGetMemoryInfo(self, h: tuple[Any, ...]) -> SimpleNamespace:
        mem = self._entry(h, "nvmlDeviceGetMemoryInfo")["memory"]
        return SimpleNamespace(total=mem["total"], free=mem["free"], used=mem["used"])

    def nvmlDeviceGetCudaComputeCapability(self, h: tuple[Any, ...]) -> tuple[int, int]:
        cc = self._entry(h, "nvmlDeviceGetCudaComputeCapability")["compute_capability"]
        return (cc[0], cc[1])

    def nvmlDeviceGetMigMode(self, h: tuple[Any, ...]) -> list[int]:
        mode = self._entry(h, "nvmlDeviceGetMigMode").get("mig_mode")
        if mode is None:
            self._raise("NVML_ERROR_NOT_SUPPORTED")
        return list(mode)

    def nvmlDeviceGetMaxMigDeviceCount(self, h: tuple[Any, ...]) -> int:
        return int(self._entry(h, "nvmlDeviceGetMaxMigDeviceCount").get("max_mig_devices", 0))

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: tuple[Any, ...], j: int) -> tuple[Any, ...]:
        dev = self._entry(h, "nvmlDeviceGetMigDeviceHandleByIndex")
        for pos, m in enumerate(dev.get("mig_devices", [])):
            if m["index"] == j:
                return ("mig", h[1], pos)
        self._raise("NVML_ERROR_NOT_FOUND")
        raise AssertionError("unreachable")

    def nvmlDeviceGetGpuInstanceId(self, h: tuple[Any, ...]) -> int:
        return int(self._entry(h, "nvmlDeviceGetGpuInstanceId")["gpu_instance_id"])

    def nvmlDeviceGetComputeInstanceId(self, h: tuple[Any, ...]) -> int:
        return int(self._entry(h, "nvmlDeviceGetComputeInstanceId")["compute_instance_id"])


# pynvml's constants (NVML_ERROR_*, NVML_DEVICE_MIG_ENABLE, ...) on the stand-in too
for _name in dir(pynvml):
    if _name.startswith("NVML_"):
        setattr(FakeNVML, _name, getattr(pynvml, _name))
