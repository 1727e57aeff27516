"""Decode speed as an upper bound: memory bandwidth over the bytes one generated token reads.

Generating a token at small batch reads every weight the token passes through once, and the KV cache
of the sequence, and does little arithmetic per byte, so a device can produce at most
`bandwidth / bytes read` tokens per second. The bytes a token reads on each device come from the
estimator (`DeviceUse.weights_read_bytes`: only the routed experts a token uses, one embedding row,
everything else whole) plus the KV cache of the sequence at its full context. Devices work:

- side by side within a tensor-parallel group (each reads its own shard; bandwidths add), so a
  stage takes as long as its slowest member;
- one after another across pipeline stages, llama.cpp's layer split and the host part of an
  offloaded plan (a token passes each in turn), so stage times add.

Real engines reach a fraction of this (kernel efficiency, all-reduce and pipeline latency, sampling);
the figure ranks plans and states a ceiling, it does not predict a benchmark.
"""

from __future__ import annotations

from vramplan.estimate import DeviceUse, Estimate

# Host memory bandwidth when none is given: dual-channel DDR5-4800, 2 channels x 8 bytes x 4800 MT/s
# = 76.8 GB/s (JEDEC JESD79-5 DDR5 data rates; a desktop or workstation board). Servers have 8-12
# channels (AMD EPYC 9004: 12 x DDR5-4800 = 460.8 GB/s): pass --host-bandwidth for those.
HOST_BANDWIDTH_GBPS = 76.8


def bytes_read_per_token(d: DeviceUse, est: Estimate) -> int:
    """Bytes device `d` reads to generate one token for each of the plan's sequences: its weights as
    a token reads them, and the KV cache of `concurrency` sequences filled to the plan's context."""
    kv = 0
    if est.kv_cells:
        kv = d.kv_cache_bytes * est.context * est.concurrency // est.kv_cells
    return d.weights_read_bytes + kv


def seconds_per_token(
    est: Estimate, gpu_bandwidth_gbps: float | None, host_bandwidth_gbps: float
) -> float | None:
    """The least time one decoding step can take (None when a device's bandwidth is unknown)."""
    tp = max(1, est.topology.tensor_parallel)
    stages: dict[int, float] = {}
    for d in est.per_gpu:
        if not gpu_bandwidth_gbps:
            return None
        t = bytes_read_per_token(d, est) / (gpu_bandwidth_gbps * 1e9)
        stage = d.index // tp
        stages[stage] = max(stages.get(stage, 0.0), t)
    host = bytes_read_per_token(est.host, est)
    total = sum(stages.values())
    if host:
        if host_bandwidth_gbps <= 0:
            return None
        total += host / (host_bandwidth_gbps * 1e9)
    return total if total > 0 else None


def tokens_per_second(
    est: Estimate, gpu_bandwidth_gbps: float | None, host_bandwidth_gbps: float = HOST_BANDWIDTH_GBPS
) -> float | None:
    """Upper bound of the decode speed of one request (each of `concurrency` requests at once)."""
    s = seconds_per_token(est, gpu_bandwidth_gbps, host_bandwidth_gbps)
    return None if s is None else 1.0 / s


def host_share(est: Estimate) -> float:
    """The share of a token's bytes read from host RAM (0 for a plan wholly on GPUs)."""
    host = bytes_read_per_token(est.host, est)
    gpus = sum(bytes_read_per_token(d, est) for d in est.per_gpu)
    return host / (host + gpus) if host + gpus else 0.0


__all__ = ["HOST_BANDWIDTH_GBPS", "bytes_read_per_token", "host_share", "tokens_per_second"]
