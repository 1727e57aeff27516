"""Real Ollama server logs (tests/fixtures/logs/real/ollama/): each parses into the figures and settings
it prints, and `vramplan check` compares it with the estimate (exit 0). Tolerances belong to the
benchmark, not here.

Each log's header names its source; index.yaml lists them with the arguments `check` needs. The last
section feeds the reader single lines in the formats Ollama's source prints (marked synthetic there),
for the variants no real log of this corpus shows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import Result

from vramplan.logs import detect, parse_log, read_log
from vramplan.logs.types import Buffer, GiB, MiB, ParsedLog
from vramplan.runtimes import Runtime

DIR = Path(__file__).parent / "fixtures" / "logs" / "real" / "ollama"
INDEX = yaml.safe_load((DIR / "index.yaml").read_text(encoding="utf-8"))
KEYS = ["file", "source", "runtime", "version", "model", "same_architecture", "gpu", "args", "held_out"]
# the logs the rules were built on; the held-out ones are read by tests/test_corpus.py and the benchmark
TUNED = [e for e in INDEX if not e["held_out"]]


def b(value: float, unit: int) -> int:
    return round(value * unit)


def total(bufs: tuple[Buffer, ...]) -> int:
    return sum(x.figure.bytes for x in bufs)


def devices(bufs: tuple[Buffer, ...]) -> list[str]:
    return [x.device for x in bufs]


@dataclass(frozen=True)
class Expected:
    weights: int
    kv: int
    compute: int
    compute_devices: list[str]
    planner: bool
    # context, n_ctx, parallel, gpu_layers, layers_total, gpus
    settings: tuple[int | None, int | None, int | None, int | None, int | None, int | None]
    gpu_name: str | None = None
    model: str | None = None
    engine: str | None = None
    # type_k, type_v, flash attention, where the log states them (None: the planner-only rule below)
    cache: tuple[str | None, str | None, bool | None] | None = None
    version: str | None = None
    # a runner-only excerpt holds no Ollama line: index.yaml passes --runtime ollama
    detected: Runtime = Runtime.OLLAMA


CUDA8 = [f"CUDA{i}" for i in range(8)]

# Figures as printed. The planner's weights are memory.weights.total read by its era (llm/memory.go):
# up to v0.6.0 that total is the blocks plus the KV cache, so the blocks + output layer are
# weights.total - required.kv + weights.nonrepeating.
EXPECTED: dict[str, Expected] = {
    "r1-671b-q4km-win-6.9gib-v0.5.x-planner.log": Expected(
        weights=b(385.0, GiB) - b(9.5, GiB) + b(725.0, MiB),
        kv=b(9.5, GiB),
        compute=b(1019.5, MiB),  # memory.graph.partial: 3 of 62 layers on the GPU
        compute_devices=["CUDA0"],
        planner=True,
        settings=(2048, 2048, 1, 3, 62, 1),  # --ctx-size 2048 --parallel 1, layers.offload=3
        engine="llama",
    ),
    "r1-671b-q4km-docker-23.3gib-v0.5.x-planner.log": Expected(
        weights=b(385.0, GiB) - b(9.5, GiB) + b(725.0, MiB),
        kv=b(9.5, GiB),
        compute=b(1019.5, MiB),
        compute_devices=["CUDA0"],
        planner=True,
        settings=(None, None, None, 5, 62, 1),  # no runner command in the excerpt: context unknown
    ),
    "r1-671b-q4km-8gpu-94.7gib-v0.5.12-planner.log": Expected(
        weights=b(413.6, GiB) - b(38.1, GiB) + b(725.0, MiB),
        kv=b(38.1, GiB),
        compute=8 * b(3.0, GiB),  # memory.graph.full on each of the 8 GPUs holding layers
        compute_devices=CUDA8,
        planner=True,
        settings=(2048, 8192, 4, 62, 62, 8),  # --ctx-size 8192 --parallel 4
        engine="llama",
    ),
    "qwq-32b-q4km-24gb-v0.5.12-parallel4-planner.log": Expected(
        weights=b(19.5, GiB) - b(2.0, GiB) + b(609.1, MiB),
        kv=b(2.0, GiB),
        compute=b(676.0, MiB),
        compute_devices=["CUDA0"],
        planner=True,
        settings=(None, None, 4, 65, 65, 1),  # parallel=4 from the scheduler's line (sched.go)
    ),
    "llama-8b-q4km-rtx4090d-v0.5.x-planner.log": Expected(
        weights=b(11.9, GiB) - b(8.0, GiB) + b(411.0, MiB),
        kv=b(8.0, GiB),
        compute=b(4.2, GiB),
        compute_devices=["CUDA0"],
        planner=True,
        settings=(None, None, None, 33, 33, 1),
        gpu_name="NVIDIA GeForce RTX 4090 D",
    ),
    "qwen2-14b-q4km-rtx4080-v0.5.x-planner.log": Expected(
        weights=b(7.7, GiB) - b(384.0, MiB) + b(609.1, MiB),
        kv=b(384.0, MiB),
        compute=b(307.0, MiB),
        compute_devices=["CUDA0"],
        planner=True,
        settings=(None, None, None, 49, 49, 1),
        gpu_name="NVIDIA GeForce RTX 4080",
    ),
    "r1-0528-qwen3-8b-fp16-rtx5090-v0.9.x-overhead-planner.log": Expected(
        weights=b(14.1, GiB),  # dated June 2025, after v0.6.3: blocks + output as printed
        kv=b(576.0, MiB),
        compute=b(384.0, MiB),
        compute_devices=["CUDA0"],
        planner=True,
        settings=(None, None, None, 5, 37, 1),
        model="DeepSeek R1 0528 Qwen3 8B",
    ),
    "llama-70b-q4km-8gpu-v0.5.x-runner-parallel4.log": Expected(
        weights=sum(
            b(x, MiB)
            for x in (563.62, 5648.81, 4777.06, 4835.88, 4777.06, 4777.06, 4835.88, 4835.88, 5491.86)
        ),
        kv=b(352.0 + 6 * 320.0 + 288.0, MiB),
        compute=0,  # the page's excerpt ends before the compute buffer lines
        compute_devices=[],
        planner=False,
        settings=(2048, 8192, 4, 81, 81, None),  # n_ctx 8192, n_seq_max 4, offloaded 81/81
        cache=("f16", "f16", False),
        detected=Runtime.LLAMA_CPP,
    ),
    # ---- round 2: logs with the runner's own allocations
    "r1-70b-q4km-3gpu-v0.5.x-runner-parallel4.log": Expected(
        # the runner's llama.cpp lines win over the planner line printed before them
        weights=b(13303.88 + 12951.00 + 13724.61, MiB),
        kv=b(864.0 + 864.0 + 832.0, MiB),
        compute=0,  # cut off after the KV lines
        compute_devices=[],
        planner=False,
        settings=(2048, 8192, 4, 81, 81, 3),  # --ctx-size 8192 --parallel 4, 3 GPUs in memory.available
        engine="llama",
        cache=("f16", "f16", False),
    ),
    "qwen2.5-14b-q4km-win-v0.5.x-runner-parallel4.log": Expected(
        weights=b(8148.38 + 417.66, MiB),  # CUDA0 + the host's token embedding
        kv=b(1536.0, MiB),
        compute=0,
        compute_devices=[],
        planner=False,
        settings=(2048, 8192, 4, 49, 49, None),  # n_seq_max 4, offloaded 49/49
        cache=("f16", "f16", False),
        detected=Runtime.LLAMA_CPP,
    ),
    "r1-32b-q4km-2gpu-v0.5.x-runner-pipeline.log": Expected(
        weights=0,  # the excerpt skips the model buffer lines
        kv=b(264.0 + 248.0, MiB),
        # pipeline parallelism (n_copies=4): each GPU's compute buffer, plus the host's
        compute=b(256.01, MiB) + b(363.02, MiB) + b(26.02, MiB),
        compute_devices=["CUDA0", "CUDA1", "CUDA_Host"],
        planner=False,
        settings=(2048, 2048, None, None, None, None),  # kv_size 2048; n_seq_max is not in the excerpt
        cache=("f16", "f16", False),
        detected=Runtime.LLAMA_CPP,
    ),
    "r1-1.5b-q4km-cpu-only-v0.5.x-runner.log": Expected(
        weights=b(1059.89, MiB),  # every layer on the CPU
        kv=0,  # cut off before the KV lines
        compute=0,
        compute_devices=[],
        planner=False,
        settings=(2048, 8192, 4, None, None, None),  # n_ctx 8192, n_seq_max 4
        cache=(None, None, None),
        detected=Runtime.LLAMA_CPP,
    ),  # the Go engine's per-device lines (v0.11.5+): what the runner allocated
    "qwen3-8b-q8-rocm-r9700-v0.12.x-engine-devices.log": Expected(
        weights=b(7.5, GiB) + b(741.9, MiB),  # ROCm0 + the token embedding on the CPU
        kv=b(576.0, MiB),
        compute=b(290.0, MiB),
        compute_devices=["ROCm0"],
        planner=False,
        settings=(4096, 4096, 1, 37, 37, None),  # KvSize:4096 Parallel:1, "offloaded 37/37 layers"
        cache=(None, None, False),  # KvCacheType empty (f16), FlashAttention:false
    ),
    "llama3-70b-q3ks-2gpu-3090ti-1070-v0.1.x-runner.log": Expected(
        weights=b(430.55 + 21517.75 + 7524.23, MiB),  # v0.1.x names: "CUDA0 buffer size"
        kv=b(488.0 + 152.0, MiB),  # split unevenly by the two cards' free memory
        compute=0,  # the compute buffers failed to allocate (the error)
        compute_devices=[],
        planner=False,
        settings=(2048, 2048, None, 81, 81, None),
        gpu_name="NVIDIA GeForce RTX 3090 Ti",
        cache=("f16", "f16", None),
        detected=Runtime.LLAMA_CPP,
    ),
    "qwen2.5-coder-7b-q4km-win-v0.5.x-runner-weights.log": Expected(
        weights=b(292.36 + 4168.09, MiB),
        kv=0,
        compute=0,
        compute_devices=[],
        planner=False,
        settings=(None, None, None, 29, 29, None),
        model="Qwen2.5 Coder 7B Instruct",
        cache=(None, None, None),
        detected=Runtime.LLAMA_CPP,
    ),
}


def read(name: str) -> ParsedLog:
    return read_log(DIR / name, Runtime.OLLAMA)


def test_index_lists_every_log_with_exactly_its_keys() -> None:
    # the held-out logs are read by tests/test_corpus.py and benchmarks/corpus.py only
    held = {e["file"] for e in INDEX if e["held_out"]}
    tuned = [e for e in INDEX if not e["held_out"]]
    assert sorted(e["file"] for e in tuned) == sorted(p.name for p in DIR.glob("*.log") if p.name not in held)
    assert sorted(EXPECTED) == sorted(e["file"] for e in tuned)
    for e in tuned:
        assert [k for k in e if k != "misses"] == KEYS, e["file"]
        assert e["runtime"] == "ollama"
        head = (DIR / e["file"]).read_text(encoding="utf-8").splitlines()
        assert head[0] == f"# source: {e['source']}"
        for field in ("runtime", "gpu", "model", "settings", "inferred"):
            assert any(line.startswith(f"# {field}: ") for line in head[:8]), (e["file"], field)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_log_parses_into_what_it_prints(name: str) -> None:
    p, want = read(name), EXPECTED[name]
    s = p.settings
    assert (total(p.weights), total(p.kv), total(p.compute)) == (want.weights, want.kv, want.compute)
    assert devices(p.compute) == want.compute_devices
    assert p.planner is want.planner and p.engine == want.engine
    assert (s.context, s.n_ctx, s.parallel, s.gpu_layers, s.layers_total, s.gpus) == want.settings
    assert (s.gpu_name, p.model) == (want.gpu_name, want.model)
    assert p.version == want.version  # most excerpts lack the "Listening on" line
    # planner-only logs name no cache type; flash attention shows in runner lines and runner commands
    if want.cache is not None:
        assert (s.type_k, s.type_v, s.flash_attn) == want.cache
    elif want.engine == "llama":
        # the runner command lacks --flash-attn (llm/server.go adds it only when enabled)
        assert (s.type_k, s.type_v, s.flash_attn) == (None, None, False)
    else:
        assert (s.type_k, s.type_v, s.flash_attn) == (None, None, None)


def test_the_ollama_lines_are_recognised_without_a_runtime_flag() -> None:
    for name in EXPECTED:
        text = (DIR / name).read_text(encoding="utf-8")
        assert detect(text) is EXPECTED[name].detected, name


def test_a_planner_log_without_a_context_says_where_the_context_is() -> None:
    p = read("r1-671b-q4km-docker-23.3gib-v0.5.x-planner.log")
    assert p.settings.context is None
    assert any("the log states no context" in n for n in p.notes)
    assert any("up to v0.6.0" in n for n in p.notes)


@pytest.mark.parametrize("entry", TUNED, ids=[e["file"] for e in TUNED])
def test_check_compares_every_log(entry: dict[str, object], run: Callable[..., Result]) -> None:
    args = [str(a) for a in entry["args"]]  # type: ignore[attr-defined]
    result = run("check", str(DIR / str(entry["file"])), *args, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["parts"], entry["file"]


# ------------------------------------------------- format variants (synthetic lines, not real logs)
# Single lines in the formats Ollama's source prints, for the variants the real logs above do not show;
# the figures are made up.

DEVICE_SETS = """\
time=2025-10-02T08:12:03.100Z level=INFO source=routes.go:1511 msg="Listening on 127.0.0.1:11434 (version 0.12.3)"
time=2025-10-02T08:12:03.120Z level=INFO source=server.go:400 msg="starting runner" cmd="/usr/bin/ollama runner --ollama-engine --model /m/blobs/sha256-0 --port 1"
time=2025-10-02T08:12:03.300Z level=DEBUG source=device.go:240 msg="model weights" device=CUDA0 size="4.0 GiB"
time=2025-10-02T08:12:03.300Z level=DEBUG source=device.go:251 msg="kv cache" device=CUDA0 size="1.0 GiB"
time=2025-10-02T08:12:03.300Z level=DEBUG source=device.go:272 msg="total memory" size="5.0 GiB"
time=2025-10-02T08:12:03.400Z level=DEBUG source=device.go:240 msg="model weights" device=CUDA0 size="3.0 GiB"
time=2025-10-02T08:12:03.400Z level=DEBUG source=device.go:245 msg="model weights" device=CPU size="1.0 GiB"
time=2025-10-02T08:12:03.400Z level=DEBUG source=device.go:272 msg="total memory" size="4.0 GiB"
time=2025-10-02T08:12:03.500Z level=INFO source=device.go:240 msg="model weights" device=CUDA0 size="3.5 GiB"
time=2025-10-02T08:12:03.500Z level=INFO source=device.go:245 msg="model weights" device=CPU size="500.0 MiB"
time=2025-10-02T08:12:03.500Z level=INFO source=device.go:251 msg="kv cache" device=CUDA0 size="448.0 MiB"
time=2025-10-02T08:12:03.500Z level=INFO source=device.go:262 msg="compute graph" device=CUDA0 size="300.0 MiB"
time=2025-10-02T08:12:03.500Z level=INFO source=device.go:272 msg="total memory" size="4.7 GiB"
"""


def test_of_several_device_summaries_the_committed_one_at_info_is_read() -> None:
    p = parse_log(DEVICE_SETS)
    assert p.engine == "ollama" and p.planner is False and p.version == "0.12.3"
    assert [(x.device, x.figure.text) for x in p.weights] == [("CUDA0", "3.5 GiB"), ("CPU", "500.0 MiB")]
    assert [x.figure.text for x in p.kv] == ["448.0 MiB"] and [x.figure.text for x in p.compute] == [
        "300.0 MiB"
    ]
    assert any("3 device summaries" in n for n in p.notes)


def test_device_lines_before_a_llama_cpp_runner_are_its_estimate() -> None:
    text = DEVICE_SETS.replace("runner --ollama-engine --model", "runner --model")
    p = parse_log(text)
    assert p.engine == "llama" and p.planner is True
    assert any("llama.cpp runner" in n for n in p.notes)


def test_the_go_runners_own_buffer_lines_v0_6_to_v0_11() -> None:
    text = (
        'time=2025-07-18T14:50:57.066Z level=INFO source=ggml.go:365 msg="model weights" buffer=CUDA0 size="11.5 GiB"\n'
        'time=2025-07-18T14:50:57.066Z level=INFO source=ggml.go:365 msg="model weights" buffer=CPU size="680.0 MiB"\n'
        'time=2025-07-18T14:50:58.130Z level=INFO source=ggml.go:672 msg="compute graph" backend=CUDA0 '
        'buffer_type=CUDA0 size="1.1 GiB"\n'
        'time=2025-07-18T14:50:58.130Z level=INFO source=ggml.go:672 msg="compute graph" backend=CPU '
        'buffer_type=CUDA_Host size="0 B"\n'
    )
    p = parse_log(text)
    assert [(x.device, x.host, x.figure.text) for x in p.weights] == [
        ("CUDA0", False, "11.5 GiB"),
        ("CPU", True, "680.0 MiB"),
    ]
    assert [(x.device, x.figure.text) for x in p.compute] == [("CUDA0", "1.1 GiB")]


@pytest.mark.parametrize(
    ("version", "weights"),
    [
        ("0.6.0", b(20.0, GiB) - b(2.0, GiB) + b(600.0, MiB)),  # blocks + KV, no output
        ("0.6.2", b(20.0, GiB) + b(600.0, MiB)),  # blocks only
        ("0.6.3", b(20.0, GiB)),  # blocks + output
    ],
)
def test_the_planners_weights_by_version(version: str, weights: int) -> None:
    text = (
        f'time=2025-04-01T00:00:00Z level=INFO source=routes.go:1 msg="Listening on 127.0.0.1:11434 (version {version})"\n'
        "time=2025-04-01T00:00:01Z level=INFO source=server.go:130 msg=offload library=cuda layers.requested=-1 "
        'layers.model=65 layers.offload=65 layers.split="" memory.available="[22.3 GiB]" memory.gpu_overhead="0 B" '
        'memory.required.full="21.5 GiB" memory.required.partial="21.5 GiB" memory.required.kv="2.0 GiB" '
        'memory.required.allocations="[21.5 GiB]" memory.weights.total="20.0 GiB" memory.weights.repeating="19.4 GiB" '
        'memory.weights.nonrepeating="600.0 MiB" memory.graph.full="676.0 MiB" memory.graph.partial="916.1 MiB"\n'
    )
    assert total(parse_log(text).weights) == weights
