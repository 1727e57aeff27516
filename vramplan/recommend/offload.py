"""Partial offload to host RAM for llama.cpp / Ollama: the most layers on the GPUs (--n-gpu-layers), or
the routed experts of the first N blocks in host RAM (--n-cpu-moe N)."""

from __future__ import annotations

from collections.abc import Callable

from vramplan.estimate import Estimate, Request, estimate, largest_true
from vramplan.recommend.machine import PlannedMachine
from vramplan.recommend.options import MIN_CONTEXT, Options
from vramplan.recommend.plan import Combo, gpu_bandwidth, gpus_fit, plan_request, quick
from vramplan.runtimes import rules_for
from vramplan.speed import tokens_per_second


def _largest_ok(ok: Callable[[int], bool], lo: int, hi: int) -> int | None:
    """The largest n in [lo, hi] with ok(n), ok monotone (true then false); None if none."""
    if lo > hi:
        return None
    n = largest_true(ok, lo, hi)
    return n if n >= lo else None


def _smallest_ok(ok: Callable[[int], bool], lo: int, hi: int) -> int | None:
    """The smallest n in [lo, hi] with ok(n), ok monotone (false then true); None if none."""
    if lo > hi or not ok(hi):
        return None
    return largest_true(lambda k: not ok(k), lo, hi) + 1  # one past the last n that is not ok


def plan_offload(
    combo: Combo, machine: PlannedMachine, opts: Options
) -> tuple[Request, Estimate, str, list[str]] | None:
    """llama.cpp / Ollama with part of the model in host RAM: the most layers on the GPUs
    (--n-gpu-layers), or, for an MoE on llama.cpp, every layer on the GPUs and the routed experts of
    the first N blocks in host RAM (--n-cpu-moe N, the fewest N that fits). The faster of the two."""
    arch = combo.variant.architecture
    n = arch.num_hidden_layers
    ctx = opts.context or MIN_CONTEXT
    g = machine.gpus_per_node

    def make(gpu_layers: int | None = None, cpu_moe: int = 0) -> Request:
        return plan_request(
            combo, machine, opts, gpus_per_node=g, context=ctx, gpu_layers=gpu_layers, cpu_moe_layers=cpu_moe
        )

    probe = quick(make())
    budget = (probe.per_gpu[0].usable_bytes or 0) * len(probe.per_gpu) + (probe.host.usable_bytes or 0)
    if probe.weights_bytes > budget:
        return None  # not even the GPUs and host RAM together hold the weights
    found: list[tuple[Request, Estimate, str]] = []
    # --n-gpu-layers k puts the last k - 1 repeating layers and the output layer on the GPUs
    layers = _largest_ok(lambda k: gpus_fit(quick(make(gpu_layers=k))), 1, n)
    if layers is not None:
        req = make(gpu_layers=layers)
        est = estimate(req, solve_concurrency=False)
        if est.fits:
            found.append((req, est, "layers"))
    if rules_for(combo.runtime).cpu_moe_option and arch.is_moe:
        # GPU use falls as N grows: the fewest N that fits
        cpu_moe = _smallest_ok(lambda k: gpus_fit(quick(make(cpu_moe=k))), 1, n)
        if cpu_moe is not None:
            req = make(cpu_moe=cpu_moe)
            est = estimate(req, solve_concurrency=False)
            if est.fits:
                found.append((req, est, "experts"))
    if not found:
        return None
    ranked = sorted(
        (
            (tokens_per_second(e, gpu_bandwidth(machine), machine.host_bandwidth_gbps) or 0.0, r, e, k)
            for r, e, k in found
        ),
        key=lambda x: -x[0],
    )
    _, req, est, kind = ranked[0]
    notes = [
        f"the other offload ({offload_words(r, e, k)}) reaches at most {tps:.1f} tokens/s"
        for tps, r, e, k in ranked[1:]
    ]
    return req, est, kind, notes


def offload_words(req: Request, est: Estimate, kind: str) -> str:
    """A partial offload in words."""
    n = req.variant.architecture.num_hidden_layers
    if kind == "layers":
        k = req.gpu_layers or 0
        return f"{k} of {n + 1} layers on the GPU (--gpu-layers {k}), the rest in host RAM"
    n_cpu = req.cpu_moe_layers
    return f"routed experts of the first {n_cpu} layers in host RAM (--n-cpu-moe {n_cpu})"
