"""The probe against recorded NVML answers of real cards, NVML names -> the spec table,
CUDA_VISIBLE_DEVICES, MIG, no driver, a failure half way, the host and Apple silicon."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from nvml_fake import FakeNVML

from vramplan import gpus, hardware, host
from vramplan.errors import CatalogError, HardwareError
from vramplan.hardware import GPU_SPECS, Machine, gpu_spec, match_nvml_name, parse_gpu, probe_machine
from vramplan.host import HostInfo

MiB = 1 << 20
GiB = 1 << 30
HOST = HostInfo(memory_bytes=2015 * GiB, available_bytes=1990 * GiB, cpu_cores=224)


def machine(recording: str, cvd: str | None = None, **env: str) -> Machine:
    environ = dict(env)
    if cvd is not None:
        environ["CUDA_VISIBLE_DEVICES"] = cvd
    return probe_machine(FakeNVML(recording), environ=environ, host=HOST)


# --------------------------------------------------------------------------- whole machines


def test_eight_h100_sxm() -> None:
    m = machine("h100_sxm_x8")
    assert [g.index for g in m.gpus] == list(range(8))
    assert [g.nvml_index for g in m.gpus] == list(range(8))
    g = m.gpus[0]
    assert g.name == "NVIDIA H100 80GB HBM3"
    assert g.memory_total_bytes == 85520809984  # 81559 MiB, as the card reports it
    assert g.memory_used_bytes == 529 * MiB
    assert g.memory_free_bytes == 85520809984 - 529 * MiB
    assert g.compute_capability == (9, 0)
    assert g.uuid is not None and g.uuid.startswith("GPU-")
    assert not g.mig_enabled and g.mig == ()
    assert {x.spec for x in m.gpus} == {gpu_spec("h100-80gb")}
    assert (m.driver_version, m.cuda_driver_version) == ("550.54.15", "12.4")
    assert m.gpu_count() == 8
    assert m.gpu_spec() is gpu_spec("h100-80gb")  # NVML memory equals the table's
    assert m.notes == ()
    assert (m.host_memory_bytes, m.host_available_bytes, m.cpu_cores) == (2015 * GiB, 1990 * GiB, 224)


def test_eight_h200_with_four_busy() -> None:
    m = machine("h200_x8")
    assert m.gpu_spec() is gpu_spec("h200")
    assert m.gpus[0].memory_used_bytes == 128 * GiB
    assert m.gpus[0].memory_free_bytes == 143771 * MiB - 128 * GiB
    assert m.gpus[7].memory_used_bytes == 529 * MiB
    assert m.cuda_driver_version == "12.8"


def test_one_rtx_4090_without_mig_support() -> None:
    m = machine("rtx_4090")
    (g,) = m.gpus
    assert g.spec is gpu_spec("rtx-4090")
    assert g.memory_total_bytes == 25757220864
    assert g.compute_capability == (8, 9)
    assert not g.mig_enabled  # NVML_ERROR_NOT_SUPPORTED from nvmlDeviceGetMigMode is no error
    assert m.notes == ()


def test_mig_gpu_with_two_instances() -> None:
    m = machine("a100_40gb_mig")
    (g,) = m.gpus
    assert g.spec is gpu_spec("a100-40gb")
    assert g.mig_enabled
    assert [(x.index, x.profile, x.gpu_instance_id, x.compute_instance_id) for x in g.mig] == [
        (0, "3g.20gb", 2, 0),
        (1, "2g.10gb", 3, 0),
    ]
    assert [x.memory_total_bytes for x in g.mig] == [20096 * MiB, 9984 * MiB]
    assert all(x.uuid and x.uuid.startswith("MIG-") for x in g.mig)
    # one CUDA process sees one MIG device: the plan is one GPU of the first MIG device's size
    assert m.gpu_count() == 1
    spec = m.gpu_spec()
    assert spec.name == "a100-40gb-mig-3g.20gb"
    assert spec.memory_bytes == 20096 * MiB
    assert spec.bandwidth_gbps == pytest.approx(1555 * 20096 / 40960, abs=0.1)
    assert spec.compute_capability == (8, 0)
    assert m.notes == (
        "GPU 0 is in MIG mode: one CUDA process uses one MIG device, so plans are for "
        "NVIDIA A100-SXM4-40GB MIG 3g.20gb (19.62 GiB)",
    )


def test_two_l40s_map_to_their_entry() -> None:
    m = machine("l40_x2")
    assert [g.spec for g in m.gpus] == [gpu_spec("l40")] * 2
    assert m.gpu_spec() is gpu_spec("l40")
    assert m.notes == ()


def test_card_not_in_the_table_still_plans_with_its_nvml_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    # the recorded L40s, planned with a table that lacks the L40
    without = gpus.GPUTable(
        tuple(g for g in GPU_SPECS if g.name != "l40"),
        {n: g for n, g in gpus.gpu_table().by_name.items() if g.name != "l40"},
    )
    monkeypatch.setattr(hardware, "match_nvml_name", functools.partial(gpus.match_nvml_name, table=without))
    m = machine("l40_x2")
    assert [g.spec for g in m.gpus] == [None, None]
    spec = m.gpu_spec()
    assert spec.memory_bytes == 46068 * MiB
    assert spec.label == "NVIDIA L40"
    assert spec.compute_capability == (8, 9)
    assert spec.fp8 and not spec.fp4  # Ada
    assert spec.bandwidth_gbps == 0.0
    assert m.gpu_count() == 2
    assert m.notes == (
        "unknown card 'NVIDIA L40': not in the GPU table, so plans use the memory NVML reports "
        "(44.99 GiB) and its bandwidth is not known",
    )


def test_nvml_error_half_way_keeps_the_other_gpus() -> None:
    fake = FakeNVML("h100_x4_gpu2_lost")
    m = probe_machine(fake, environ={}, host=HOST)
    assert [g.nvml_index for g in m.gpus] == [0, 1, 3]
    assert [g.index for g in m.gpus] == [0, 1, 3]  # CUDA still numbers the lost GPU
    assert m.gpu_count() == 3
    assert m.notes == (
        "NVML device 2 (NVIDIA H100 80GB HBM3): nvmlDeviceGetMemoryInfo failed (GPU is lost, "
        "NVML_ERROR_GPU_IS_LOST); it is left out, the other GPUs are reported",
    )
    assert fake.calls[-1] == "nvmlShutdown"


def test_differing_gpus_plan_as_the_smallest() -> None:
    m = machine("mixed_4090_3090")
    assert m.gpu_spec() is gpu_spec("rtx-4090")  # 24564 MiB < the 3090's 24576 MiB
    assert m.gpu_count() == 2
    assert m.notes == (
        "the GPUs differ and CUDA_DEVICE_ORDER is not PCI_BUS_ID: CUDA numbers the fastest GPU first, "
        "while the indices here follow NVML's PCI bus order",
        "the GPUs differ (NVIDIA GeForce RTX 3090, NVIDIA GeForce RTX 4090); plans treat all 2 as the "
        "smallest, NVIDIA GeForce RTX 4090 (23.99 GiB)",
    )
    ordered = machine("mixed_4090_3090", CUDA_DEVICE_ORDER="PCI_BUS_ID")
    assert "CUDA_DEVICE_ORDER" not in " ".join(ordered.notes)


@pytest.mark.parametrize(
    ("recording", "note"),
    [
        (
            "no_library",
            "no NVIDIA driver found (NVML: NVML Shared Library Not Found, NVML_ERROR_LIBRARY_NOT_FOUND)",
        ),
        (
            "driver_not_loaded",
            "the NVIDIA driver is installed but not loaded (NVML: Driver Not Loaded, "
            "NVML_ERROR_DRIVER_NOT_LOADED)",
        ),
    ],
)
def test_nvml_that_cannot_start_gives_a_host_plan(recording: str, note: str) -> None:
    m = machine(recording)
    assert m.gpus == ()
    assert m.gpu_count() == 0
    assert m.notes == (note,)
    assert m.host_memory_bytes == HOST.memory_bytes
    with pytest.raises(HardwareError, match="no usable GPU"):
        m.gpu_spec()


@pytest.mark.parametrize(
    ("code", "note"),
    [
        (
            "NVML_ERROR_LIB_RM_VERSION_MISMATCH",
            "the NVIDIA driver and its NVML library differ in version; reboot or reload it (NVML: RM has "
            "detected an NVML/RM version mismatch., NVML_ERROR_LIB_RM_VERSION_MISMATCH)",
        ),
        (
            "NVML_ERROR_NO_PERMISSION",
            "no permission to read the GPUs (NVML: Insufficient Permissions, NVML_ERROR_NO_PERMISSION)",
        ),
        ("NVML_ERROR_UNKNOWN", "NVML could not start (NVML: Unknown Error, NVML_ERROR_UNKNOWN)"),
    ],
)
def test_other_init_failures_are_named(code: str, note: str) -> None:
    m = probe_machine(FakeNVML({"init_error": code, "devices": []}), environ={}, host=HOST)
    assert (m.gpus, m.notes) == ((), (note,))


def test_no_driver_never_imports_pynvml() -> None:
    code = (
        "import sys\n"
        "from vramplan.hardware import probe_machine\n"
        "m = probe_machine(find_driver=lambda: 'no /proc/driver/nvidia')\n"
        "print(m.notes[0]); print('pynvml' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["no NVIDIA driver found (no /proc/driver/nvidia)", "False"]


def test_the_real_probe_never_raises() -> None:
    m = probe_machine()
    assert isinstance(m, Machine)
    assert m.host_memory_bytes is None or m.host_memory_bytes > 0


# --------------------------------------------------------------------------- is there a driver?


def absence(files: set[str], *, cache: bytes = b"", platform: str = "linux", ld: str = "") -> str | None:
    def read(path: str) -> bytes:
        if path == host.LD_SO_CACHE and cache:
            return cache
        raise FileNotFoundError(path)

    return host.driver_absence(platform, files.__contains__, read, {"LD_LIBRARY_PATH": ld} if ld else {})


def test_driver_absence() -> None:
    assert absence(set()) == "/proc/driver/nvidia is absent and libnvidia-ml.so.1 is not installed"
    assert absence({"/proc/driver/nvidia"}) is None
    assert absence({"/dev/nvidiactl"}) is None
    assert absence({"/usr/lib/wsl/lib/libnvidia-ml.so.1"}) is None  # WSL2: no /proc/driver/nvidia
    assert absence({"/opt/nv/libnvidia-ml.so.1"}, ld="/opt/nv") is None
    assert absence(set(), cache=b"\x00libnvidia-ml.so.1\x00/usr/lib/x86_64-linux-gnu/") is None
    assert absence(set(), cache=b"\x00libc.so.6\x00") is not None
    assert absence(set(), platform="darwin") == "macOS has no NVIDIA driver"
    assert absence(set(), platform="win32") is None  # NVML itself is asked there


# --------------------------------------------------------------------------- CUDA_VISIBLE_DEVICES


def uuid_of(recording: str, i: int) -> str:
    return str(FakeNVML(recording).rec["devices"][i]["uuid"])


@pytest.mark.parametrize(
    ("cvd", "nvml_indices", "note"),
    [
        ("2,5", [2, 5], None),
        ("5,2", [5, 2], None),  # enumerated in the order given
        (" 3 , 1 ", [3, 1], None),
        ("", [], "CUDA_VISIBLE_DEVICES is empty, so CUDA sees no GPU"),
        (
            "0,2,-1,1",
            [0, 2],
            "'-1' names no GPU here; CUDA stops the list there (NVML devices visible: 0, 2)",
        ),
        ("-1", [], "'-1' names no GPU here; CUDA stops the list there (NVML devices visible: none)"),
        ("7,8", [7], "'8' names no GPU here"),
        ("1,1,2", [1], "'1' names a GPU twice"),
        ("0,h100", [0], "'h100' names no GPU here"),
        ("GPU-", [], "'GPU-' names no GPU here"),  # a prefix every UUID shares is ambiguous
    ],
)
def test_cuda_visible_devices_by_index(cvd: str, nvml_indices: list[int], note: str | None) -> None:
    m = machine("h100_sxm_x8", cvd)
    assert [g.nvml_index for g in m.gpus] == nvml_indices
    assert [g.index for g in m.gpus] == list(range(len(nvml_indices)))  # CUDA renumbers from 0
    assert m.gpu_count() == len(nvml_indices)
    if note is None:
        assert m.notes == ()
    else:
        assert note in m.notes[0]


def test_cuda_visible_devices_by_uuid_and_prefix() -> None:
    full = uuid_of("h100_sxm_x8", 6)
    short = uuid_of("h100_sxm_x8", 3)[:12]  # "GPU-" and enough digits to be unique
    m = machine("h100_sxm_x8", f"{full},{short}")
    assert [(g.index, g.nvml_index) for g in m.gpus] == [(0, 6), (1, 3)]
    assert m.gpus[0].uuid == full


def test_cuda_visible_devices_names_a_mig_device() -> None:
    rec = FakeNVML("a100_40gb_mig").rec
    second = rec["devices"][0]["mig_devices"][1]["uuid"]
    m = machine("a100_40gb_mig", second)
    (g,) = m.gpus
    assert [x.profile for x in g.mig] == ["2g.10gb"]
    assert m.gpu_spec().memory_bytes == 9984 * MiB
    assert m.gpu_spec().name == "a100-40gb-mig-2g.10gb"
    # the pre-R470 form MIG-GPU-<uuid>/<gpu instance>/<compute instance> names the same device
    old = machine("a100_40gb_mig", f"MIG-{rec['devices'][0]['uuid']}/3/0")
    assert [x.profile for x in old.gpus[0].mig] == ["2g.10gb"]
    assert machine("a100_40gb_mig", f"MIG-{rec['devices'][0]['uuid']}/9/0").gpus == ()


# --------------------------------------------------------------------------- NVML names -> spec table

REAL_NAMES = {
    "NVIDIA H100 80GB HBM3": "h100-80gb",
    "NVIDIA H100 PCIe": "h100-pcie",
    "NVIDIA H100 NVL": "h100-nvl",
    "NVIDIA H200": "h200",
    "NVIDIA H20": "h20",
    "NVIDIA B200": "b200",
    "NVIDIA A100-SXM4-80GB": "a100-80gb",
    "NVIDIA A100 80GB PCIe": "a100-80gb-pcie",
    "NVIDIA A100-SXM4-40GB": "a100-40gb",
    "NVIDIA A100-PCIE-40GB": "a100-40gb",
    "A100-SXM-80GB": "a100-80gb",  # R450 drivers: no "NVIDIA " and SXM without the 4
    "A100-SXM4-40GB": "a100-40gb",
    "NVIDIA L40S": "l40s",
    "NVIDIA L4": "l4",
    "NVIDIA A10G": "a10g",
    "NVIDIA A10": "a10",
    "NVIDIA A40": "a40",
    "NVIDIA L40": "l40",
    "NVIDIA L20": "l20",
    "NVIDIA H800": "h800",
    "NVIDIA H20-3e": "h20-141gb",
    "NVIDIA GH200 480GB": "gh200",
    "NVIDIA B300 SXM6 AC": "b300",
    "NVIDIA A800-SXM4-80GB": "a800-80gb",
    "NVIDIA A800 80GB PCIe": "a800-80gb-pcie",
    "NVIDIA GeForce RTX 4090 D": "rtx-4090d",
    "NVIDIA RTX PRO 6000 Blackwell Workstation Edition": "rtx-pro-6000",
    "Tesla T4": "t4",
    "Tesla V100-SXM2-32GB": "v100-32gb",
    "Tesla V100-PCIE-32GB": "v100-32gb",
    "NVIDIA GeForce RTX 3090": "rtx-3090",
    "GeForce RTX 3090": "rtx-3090",
    "NVIDIA GeForce RTX 4090": "rtx-4090",
    "NVIDIA GeForce RTX 5090": "rtx-5090",
    "NVIDIA RTX A6000": "rtx-a6000",
    "NVIDIA RTX 6000 Ada Generation": "rtx-6000-ada",
    "AMD Instinct MI300X": "mi300x",
    "NVIDIA A100-SXM4-40GB MIG 1g.5gb": "a100-40gb",  # a MIG device maps to its card
    "NVIDIA H100 80GB HBM3 MIG 1g.10gb": "h100-80gb",
}


@pytest.mark.parametrize(("name", "spec"), sorted(REAL_NAMES.items()))
def test_real_nvml_names_map_to_the_table(name: str, spec: str) -> None:
    found, note = match_nvml_name(name)
    assert found is not None and found.name == spec
    assert note is None


def test_every_table_name_maps_back_to_its_entry() -> None:
    for g in GPU_SPECS:
        for n in g.nvml_names:
            assert match_nvml_name(n) == (g, None)


def test_a_name_that_contains_a_table_name_matches_when_the_memory_agrees() -> None:
    spec, note = match_nvml_name("NVIDIA H200 NVL", 143771 * MiB)
    assert spec is gpu_spec("h200")
    assert (
        note == "'NVIDIA H200 NVL' is not in the GPU table; using h200 (NVIDIA H200 141GB), the closest entry"
    )
    # a laptop 4090 has 16 GB: same words, another card
    assert match_nvml_name("NVIDIA GeForce RTX 4090 Laptop GPU", 16376 * MiB) == (None, None)


@pytest.mark.parametrize(
    "name",
    ["NVIDIA L2", "NVIDIA RTX 5880 Ada Generation", "Tesla V100S-PCIE-32GB", "NVIDIA A16", "NVIDIA A100"],
)
def test_other_cards_are_unknown(name: str) -> None:
    assert match_nvml_name(name, 46068 * MiB) == (None, None)


def test_gpu_spec_takes_ids_aliases_and_nvml_names() -> None:
    assert gpu_spec("H100") is gpu_spec("h100-80gb")
    assert gpu_spec("a100_80gb") is gpu_spec("a100-80gb")
    assert gpu_spec("NVIDIA H100 80GB HBM3") is gpu_spec("h100-80gb")
    assert gpu_spec("NVIDIA GeForce RTX 4090") is gpu_spec("rtx-4090")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("h100-sxm5", "unknown GPU 'h100-sxm5'; did you mean h100-80gb, h100-pcie, h100-nvl?"),
        ("rtx4090", "unknown GPU 'rtx4090'; did you mean rtx-4090"),
        ("h100:0", "GPU count in 'h100:0' must be at least 1"),
        ("h100:-2", "GPU count in 'h100:-2' must be at least 1"),
        ("h100:eight", "GPU count in 'h100:eight' must be a whole number"),
        ("h100:", "GPU count in 'h100:' must be a whole number"),
        (
            "h100:65",
            "GPU count in 'h100:65' is more than the 64 GPUs one node can hold; use --nodes for more",
        ),
        (":8", "--gpu ':8' names no GPU; write NAME[:COUNT], e.g. h100-80gb:8"),
    ],
)
def test_parse_gpu_rejects_bad_input(text: str, message: str) -> None:
    with pytest.raises(HardwareError) as err:
        parse_gpu(text)
    assert str(err.value).startswith(message)


def test_parse_gpu() -> None:
    assert parse_gpu("h100-80gb:8") == hardware.GPUChoice(gpu_spec("h100-80gb"), 8)
    assert parse_gpu("l4") == hardware.GPUChoice(gpu_spec("l4"), 1)


# --------------------------------------------------------------------------- the host


def reader(files: dict[str, str]):  # type: ignore[no-untyped-def]
    def read(path: str) -> str:
        if path in files:
            return files[path]
        raise FileNotFoundError(path)

    return read


MEMINFO = "MemTotal:       24684092 kB\nMemFree:        21628392 kB\nMemAvailable:   23180872 kB\n"


def test_linux_host_reads_meminfo() -> None:
    h = host.read_host("linux", read_text=reader({"/proc/meminfo": MEMINFO}))
    assert (h.memory_bytes, h.available_bytes) == (24684092 * 1024, 23180872 * 1024)
    assert h.cpu_cores is not None and h.cpu_cores >= 1
    assert h.unified_memory_bytes is None and h.notes == ()


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"/sys/fs/cgroup/memory.max": "max\n"}, None),
        ({"/sys/fs/cgroup/memory.max": "8589934592\n"}, 8 * GiB),
        ({"/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n"}, None),  # v1 unlimited
        ({"/sys/fs/cgroup/memory/memory.limit_in_bytes": "4294967296\n"}, 4 * GiB),
        ({}, None),
    ],
)
def test_cgroup_limit(files: dict[str, str], limit: int | None) -> None:
    assert host.cgroup_limit(reader(files)) == limit


def test_a_container_limit_caps_host_ram() -> None:
    files = {"/proc/meminfo": MEMINFO, "/sys/fs/cgroup/memory.max": str(8 * GiB)}
    h = host.read_host("linux", read_text=reader(files))
    assert h.memory_bytes == 8 * GiB
    assert h.available_bytes == 8 * GiB
    assert h.notes == (
        "this container may use 8.00 GiB of the host's 23.54 GiB (cgroup memory limit); plans use the limit",
    )


def test_without_meminfo_sysconf_answers() -> None:
    h = host.read_host("linux", read_text=reader({}))
    assert h.memory_bytes is not None and h.memory_bytes > 0


def sysctl(values: dict[str, int]):  # type: ignore[no-untyped-def]
    return values.get


@pytest.mark.parametrize(
    ("ram_gib", "share_bytes"),
    [
        (8, 8 * GiB * 2 // 3),  # Metal reports 5461.34 MB
        (16, 16 * GiB * 2 // 3),  # 10922.67 MB
        (32, 32 * GiB * 2 // 3),  # 21845.34 MB
        (24, 16 * GiB),  # 17179.89 MB (10^6 bytes) on a 24 GB M2
        (36, 27 * GiB),  # above 32 GB: three quarters; 28991.03 MB on a 36 GB M4 Max
        (48, 36 * GiB),
        (96, 72 * GiB),  # 73728 MB
        (128, 96 * GiB),
    ],
)
def test_apple_metal_share_default(ram_gib: int, share_bytes: int) -> None:
    unified, share, notes = host.apple_memory(
        sysctl({"hw.memsize": ram_gib * GiB, "iogpu.wired_limit_mb": 0})
    )
    assert (unified, share) == (ram_gib * GiB, share_bytes)
    assert "macOS default" in notes[0]


def test_apple_wired_limit_overrides_the_default() -> None:
    _, share, notes = host.apple_memory(sysctl({"hw.memsize": 128 * GiB, "iogpu.wired_limit_mb": 114688}))
    assert share == 112 * GiB
    assert notes == (
        "Apple silicon: Metal lets the GPU use 112.00 GiB of 128.00 GiB unified memory "
        "(iogpu.wired_limit_mb = 114688); llama.cpp and Ollama place layers there",
    )
    # the older sysctl, debug.iogpu.wired_limit, is in bytes
    _, old, _ = host.apple_memory(sysctl({"hw.memsize": 64 * GiB, "debug.iogpu.wired_limit": 56 * GiB}))
    assert old == 56 * GiB


def test_apple_silicon_host() -> None:
    h = host.read_host("darwin", "arm64", sysctl=sysctl({"hw.memsize": 64 * GiB, "iogpu.wired_limit_mb": 0}))
    assert (h.memory_bytes, h.unified_memory_bytes, h.gpu_share_bytes) == (64 * GiB, 64 * GiB, 48 * GiB)
    intel = host.read_host("darwin", "x86_64", sysctl=sysctl({"hw.memsize": 64 * GiB}))
    assert intel.unified_memory_bytes is None


def test_apple_machine_has_no_nvidia_gpu_but_a_gpu_share() -> None:
    apple = host.read_host(
        "darwin", "arm64", sysctl=sysctl({"hw.memsize": 36 * GiB, "iogpu.wired_limit_mb": 0})
    )
    m = probe_machine(environ={}, host=apple, find_driver=lambda: host.driver_absence("darwin"))
    assert m.gpus == ()
    # 3/4 above 32 GiB: a 36 GB M4 Max reports 27 GiB (vramplan/host.py)
    assert (m.unified_memory_bytes, m.gpu_share_bytes) == (36 * GiB, 27 * GiB)
    assert m.notes[0] == "no NVIDIA driver found (macOS has no NVIDIA driver)"
    assert m.notes[1].startswith("Apple silicon: Metal lets the GPU use 27.00 GiB of 36.00 GiB")


def test_an_old_driver_without_mig_calls_is_no_error() -> None:
    fake = FakeNVML("rtx_4090")
    fake.rec["devices"][0]["errors"] = {"nvmlDeviceGetMigMode": "NVML_ERROR_FUNCTION_NOT_FOUND"}
    m = probe_machine(fake, environ={}, host=HOST)
    assert len(m.gpus) == 1 and not m.gpus[0].mig_enabled
    assert m.notes == ()


def test_optional_calls_that_fail_leave_their_field_empty() -> None:
    fake = FakeNVML("rtx_4090")
    fake.rec["devices"][0]["errors"] = {
        "nvmlDeviceGetUUID": "NVML_ERROR_UNKNOWN",
        "nvmlDeviceGetCudaComputeCapability": "NVML_ERROR_UNKNOWN",
    }
    m = probe_machine(fake, environ={}, host=HOST)
    (g,) = m.gpus
    assert (g.uuid, g.compute_capability, g.spec) == (None, None, gpu_spec("rtx-4090"))
    assert m.notes == (
        "NVML device 0: nvmlDeviceGetUUID failed (Unknown Error, NVML_ERROR_UNKNOWN)",
        "NVML device 0: nvmlDeviceGetCudaComputeCapability failed (Unknown Error, NVML_ERROR_UNKNOWN)",
    )


def test_a_misbehaving_nvml_module_is_a_note_not_a_crash() -> None:
    class Broken(FakeNVML):
        def nvmlDeviceGetCount(self) -> int:
            raise RuntimeError("ctypes went wrong")

    m = probe_machine(Broken("h100_sxm_x8"), environ={}, host=HOST)
    assert m.gpus == ()
    assert m.notes == ("reading the GPUs failed (RuntimeError: ctypes went wrong)",)


# --------------------------------------------------------------------------- the table as data


def test_every_card_names_its_sources() -> None:
    for g in GPU_SPECS:
        assert "https://" in g.source or "product brief" in g.source, g.name
        assert g.memory_source, g.name
        if g.unified:  # Apple silicon: neither an NVIDIA compute capability nor an AMD gfx target
            assert g.compute_capability is None and g.gfx_arch is None, g.name
        else:
            assert (g.compute_capability is None) != (g.gfx_arch is None), g.name


def test_the_cards_people_run_r1_on_are_in_the_table() -> None:
    names = {g.name for g in GPU_SPECS}
    wanted = (
        "h800 a800-80gb a800-40gb l20 h20-141gb rtx-4090d rtx-4080 rtx-4080-super rtx-4070-ti "
        "rtx-4070-ti-super rtx-4060-ti-16gb rtx-3060-12gb rtx-3080 rtx-3080-ti rtx-3090-ti rtx-5080 "
        "rtx-5070-ti rtx-pro-6000 b300 gh200 mi325x mi355x mi250x a10 a40 l40 rtx-a5000 rtx-a4000 "
        "v100-16gb p40"
    ).split()
    assert not set(wanted) - names
    assert gpu_spec("h20").memory_bytes == 97871 * MiB  # the 96 GB H20 keeps its name
    assert gpu_spec("h20-141gb").memory_bytes == 143771 * MiB


# every name the table answered to before it became data still answers, to the same card (a10 was an
# alias of a10g; the A10 now has its own entry with the A10G's numbers)
OLD_NAMES = {
    "t4": "t4", "v100-32gb": "v100-32gb", "v100": "v100-32gb", "a10g": "a10g", "a10": "a10",
    "l4": "l4", "l40s": "l40s", "a100-40gb": "a100-40gb", "a100-40": "a100-40gb",
    "a100-80gb": "a100-80gb", "a100": "a100-80gb", "a100-80": "a100-80gb", "a100-sxm": "a100-80gb",
    "a100-80gb-pcie": "a100-80gb-pcie", "a100-pcie": "a100-80gb-pcie", "h100-80gb": "h100-80gb",
    "h100": "h100-80gb", "h100-sxm": "h100-80gb", "h100-pcie": "h100-pcie", "h100-nvl": "h100-nvl",
    "h20": "h20", "h200": "h200", "h200-141gb": "h200", "h200-sxm": "h200", "b200": "b200",
    "rtx-3090": "rtx-3090", "3090": "rtx-3090", "rtx-4090": "rtx-4090", "4090": "rtx-4090",
    "rtx-5090": "rtx-5090", "5090": "rtx-5090", "rtx-a6000": "rtx-a6000", "a6000": "rtx-a6000",
    "rtx-6000-ada": "rtx-6000-ada", "6000-ada": "rtx-6000-ada", "mi300x": "mi300x",
}  # fmt: skip


@pytest.mark.parametrize(("name", "card"), sorted(OLD_NAMES.items()))
def test_old_names_still_work(name: str, card: str) -> None:
    assert gpu_spec(name).name == card


def test_a_name_of_two_sizes_is_told_apart_by_memory() -> None:
    spec, note = match_nvml_name("NVIDIA GeForce RTX 4060 Ti", 16380 * MiB)
    assert spec is gpu_spec("rtx-4060-ti-16gb") and note is None
    assert match_nvml_name("NVIDIA GeForce RTX 4060 Ti", 8188 * MiB) == (
        None,
        "'NVIDIA GeForce RTX 4060 Ti' reports 8188 MiB, unlike the table's rtx-4060-ti-16gb 16384 MiB: "
        "plans use the memory NVML reports and its bandwidth is not known",
    )


def test_more_gpus_than_a_usual_server_is_a_note() -> None:
    choice = parse_gpu("rtx-3090:10")
    assert choice.count == 10 and choice.spec is gpu_spec("rtx-3090")
    assert choice.notes == (
        "10 x rtx-3090 in one node: more than the 8 its usual server holds; planned as one machine with all of them",
    )
    assert parse_gpu("rtx-3090:8").notes == ()
    assert parse_gpu("rtx-3090:64").count == 64
    with pytest.raises(HardwareError, match="more than the 64 GPUs one node can hold"):
        parse_gpu("rtx-3090:65")


def test_an_alias_of_one_card_of_several_says_which() -> None:
    """`--gpu h100` is the SXM card, though h100-pcie and h100-nvl are H100s too: the choice says so;
    a card's own id, and an alias only one card answers to, add nothing."""
    assert parse_gpu("h100:8").notes == (
        "--gpu h100 is the h100-80gb (NVIDIA H100 SXM 80GB); name h100-pcie or h100-nvl for the others",
    )
    assert parse_gpu("V100").alias_note == (
        "--gpu v100 is the v100-32gb (Tesla V100 SXM2 32GB); name v100-16gb for the other"
    )
    for name in ("h100-80gb", "h100-sxm", "4090", "a100-40", "l40s"):
        assert parse_gpu(name).alias_note is None, name


def test_estimate_and_recommend_say_which_card_an_alias_picked(run: Callable[..., Result]) -> None:
    note = (
        "--gpu a100 is the a100-80gb (NVIDIA A100 SXM4 80GB); name a100-40gb or a100-80gb-pcie for the others"
    )
    doc = json.loads(run("estimate", "r1-7b", "--gpu", "a100", "--json").stdout)
    assert doc["topology"]["gpu"] == "a100-80gb" and doc["notes"][0] == note
    assert f"note: {note}" in " ".join(run("estimate", "r1-7b", "--gpu", "a100").stdout.split())
    assert note not in run("estimate", "r1-7b", "--gpu", "a100-80gb").stdout
    rec = json.loads(run("recommend", "--gpu", "a100", "--model", "r1-7b", "--json").stdout)
    assert note in rec["machine"]["notes"]


USER_GPU = """
gpus:
  - name: {name}
    label: My Card 20GB
    memory_mib: 20480
    memory_source: nvidia-smi on my box
    bandwidth_gbps: 500
    compute_capability: 8.9
    fp8: true
    fp4: false
    interconnect: pcie
    max_per_node: 4
    nvml_names: ["NVIDIA My Card"]
    source: https://example.com/my-card
{extra}"""


def user_catalog(tmp_path, name: str = "my-card", extra: str = ""):  # type: ignore[no-untyped-def]
    path = tmp_path / "mine.yaml"
    path.write_text(USER_GPU.format(name=name, extra=extra))
    return str(path)


def test_a_user_catalog_adds_gpus(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    path = user_catalog(tmp_path)
    assert parse_gpu("my-card:2", [path]).spec.memory_bytes == 20480 * MiB
    with pytest.raises(HardwareError):
        parse_gpu("my-card")  # not without the catalog
    monkeypatch.setenv("VRAMPLAN_CATALOG", path)
    spec = parse_gpu("my-card").spec
    assert spec.compute_capability == (8, 9) and spec.fp8
    assert match_nvml_name("NVIDIA My Card", 20480 * MiB) == (spec, None)
    # a catalog of GPUs alone is a catalog: the model catalog accepts it
    from vramplan.catalog import load_catalog

    assert load_catalog([path]).get("deepseek-r1").id == "deepseek-r1"


def test_a_user_gpu_with_a_built_in_name_needs_override(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = user_catalog(tmp_path, name="h100")
    with pytest.raises(CatalogError) as err:
        parse_gpu("h100", [path])
    assert str(err.value) == (
        f"{path}: gpus[0] (h100): 'h100' is a built-in GPU name; add `override: true` to replace that entry"
    )
    path = user_catalog(tmp_path, name="h100-80gb", extra="    override: true\n")
    spec = parse_gpu("h100", [path]).spec  # the alias of the replaced card finds the new entry
    assert spec.name == "h100-80gb" and spec.memory_bytes == 20480 * MiB


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("max_per_node: 4", "max_per_nodes: 4"),
            "gpus[0] (my-card).max_per_nodes: unknown field (did you mean 'max_per_node'?)",
        ),
        (
            ("memory_mib: 20480", "memory_mib: 20 GB"),
            "gpus[0] (my-card).memory_mib: expected a whole number of MiB, got '20 GB'",
        ),
        (("fp8: true", "fp8: yes please"), "gpus[0] (my-card).fp8: expected true or false, got 'yes please'"),
        (
            ("interconnect: pcie", "interconnect: ethernet"),
            "gpus[0] (my-card).interconnect: must be one of nvlink, pcie, infinity-fabric, none",
        ),
        (
            ("compute_capability: 8.9", "compute_capability: ada"),
            "gpus[0] (my-card).compute_capability: expected MAJOR.MINOR such as '9.0', got 'ada'",
        ),
        (
            ("max_per_node: 4", "max_per_node: 100"),
            "gpus[0] (my-card).max_per_node: must be between 1 and 64",
        ),
        (
            ("    source: https://example.com/my-card\n", ""),
            "gpus[0] (my-card).source: missing required field",
        ),
    ],
)
def test_bad_user_gpus_name_the_file_the_entry_and_the_field(
    tmp_path, edit: tuple[str, str], message: str
) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.yaml"
    path.write_text(USER_GPU.format(name="my-card", extra="").replace(*edit))
    with pytest.raises(CatalogError) as err:
        parse_gpu("h100", [str(path)])
    assert str(err.value) == f"{path}: {message}"


def test_the_table_is_read_only_when_a_gpu_is_named() -> None:
    code = (
        "import vramplan.hardware, vramplan.estimate, vramplan.gpus as g\n"
        "print(g._table.cache_info().currsize)\n"
        "vramplan.hardware.parse_gpu('h100')\n"
        "print(g._table.cache_info().currsize)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", "1"]


def test_gpus_yaml_ships_in_the_wheel() -> None:
    import tomllib

    from vramplan.resources import data_file

    root = Path(__file__).resolve().parent.parent
    project = tomllib.loads((root / "pyproject.toml").read_text())
    wheel = project["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert wheel["gpus.yaml"] == "vramplan/_data/gpus.yaml"
    assert "gpus.yaml" in project["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]
    assert data_file("gpus.yaml") == str(root / "gpus.yaml")  # a checkout / editable install


def memory_mib(g: gpus.GPUSpec) -> str:
    """A card's memory in MiB; Apple silicon: Metal's share of the unified memory."""
    if g.unified_memory_bytes is None:
        return str(g.memory_bytes // MiB)
    return f"{g.memory_bytes // MiB} (Metal's share of {g.unified_memory_bytes // MiB} unified)"


def cards_section() -> str:
    """The list of cards in docs/hardware.md: every card of gpus.yaml with its sources."""
    lines = [
        "| `--gpu` | card | memory (MiB) | bandwidth (GB/s) | memory from | spec source |",
        "|---|---|---:|---:|---|---|",
    ]
    for g in GPU_SPECS:
        lines.append(
            f"| `{g.name}` | {g.label} | {memory_mib(g)} | {g.bandwidth_gbps:g} "
            f"| {g.memory_source} | {g.source} |"
        )
    return "\n".join(lines)


def test_docs_list_every_card_with_its_sources() -> None:
    import os

    doc = Path(__file__).resolve().parent.parent / "docs" / "hardware.md"
    text = doc.read_text()
    head, rest = text.split("<!-- cards -->\n")
    _, tail = rest.split("<!-- /cards -->")
    want = f"{head}<!-- cards -->\n{cards_section()}\n<!-- /cards -->{tail}"
    if os.environ.get("VRAMPLAN_UPDATE_GOLDEN") == "1":
        doc.write_text(want)
    assert text == want, (
        "docs/hardware.md lists other cards than gpus.yaml; VRAMPLAN_UPDATE_GOLDEN=1 rewrites it"
    )
