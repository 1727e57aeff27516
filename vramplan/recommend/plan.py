"""Planning one variant x quantization x runtime (a Combo) on the machine: its request, a quick yes / no
estimate, and the Candidate with its speed bound and commands."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from vramplan.catalog import Quant, Variant
from vramplan.estimate import Estimate, Request, estimate
from vramplan.recommend.commands import estimate_command
from vramplan.recommend.machine import PlannedMachine
from vramplan.recommend.options import Candidate, Options
from vramplan.runtimes import Runtime
from vramplan.speed import host_share, tokens_per_second


@dataclass(frozen=True)
class Combo:
    variant: Variant
    quant: Quant
    runtime: Runtime
    quality: float | None
    rank: int
    group: int = 0  # the variant's quality group (quality.quality_groups)


def plan_request(
    combo: Combo,
    machine: PlannedMachine,
    opts: Options,
    *,
    gpus_per_node: int,
    nodes: int = 1,
    context: int | None,
    gpu_layers: int | None = None,
    cpu_moe_layers: int = 0,
) -> Request:
    return Request(
        variant=combo.variant,
        quant=combo.quant,
        runtime=combo.runtime,
        context=context,
        concurrency=opts.concurrency,
        gpu=machine.gpu,
        gpus_per_node=max(1, gpus_per_node),
        nodes=nodes,
        host_memory_bytes=machine.host_memory_bytes,
        cpu_only=machine.cpu_only,
        gpu_layers=gpu_layers,
        cpu_moe_layers=cpu_moe_layers,
        headroom=opts.headroom,
    )


def quick(req: Request) -> Estimate:
    """An estimate without the inverse solvers (for yes / no questions)."""
    return estimate(req, solve_context=False, solve_concurrency=False)


def gpus_fit(est: Estimate) -> bool:
    return all(d.fits for d in est.per_gpu)


def make_candidate(
    combo: Combo,
    machine: PlannedMachine,
    req: Request,
    est: Estimate,
    *,
    fits: bool,
    reason: str,
    kind: str | None = None,
    notes: Iterable[str] = (),
) -> Candidate:
    extra = list(notes)
    extra += [n for n in est.notes if "Marlin" in n]  # FP8 / FP4 run without native support
    if fits and kind is not None:
        share = host_share(est)
        extra.append(
            f"{share:.0%} of the bytes a token reads come from host RAM "
            f"(assumed {machine.host_bandwidth_gbps:g} GB/s; --host-bandwidth)"
        )
    c = Candidate(
        request=req,
        estimate=est,
        fits=fits,
        reason=reason,
        quality=combo.quality,
        quality_group=combo.group,
        quant_rank=combo.rank,
        tokens_per_second=tokens_per_second(est, gpu_bandwidth(machine), machine.host_bandwidth_gbps),
        offload=kind,
        notes=tuple(extra),
    )
    return replace(c, estimate_command=estimate_command(c, machine))


def gpu_bandwidth(machine: PlannedMachine) -> float | None:
    return machine.gpu.bandwidth_gbps if machine.gpu else None
