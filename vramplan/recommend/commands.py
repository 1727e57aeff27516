"""The `vramplan deploy` and `vramplan estimate` commands that start, or reproduce, a candidate."""

from __future__ import annotations

from vramplan.hardware import size_text
from vramplan.recommend.machine import PlannedMachine
from vramplan.recommend.options import Candidate, Options


def _gpu_flags(c: Candidate, machine: PlannedMachine) -> list[str]:
    if c.cpu_plan or machine.gpu is None:
        return []
    t = c.estimate.topology
    per_node = c.request.gpus_per_node
    whole = per_node == machine.gpus_per_node and t.nodes == machine.nodes
    if machine.probed and not machine.named_gpu:
        return []  # the probe of this machine gives the same GPUs (only whole-machine plans then)
    if machine.probed and whole:
        return []
    flags = ["--gpu", f"{machine.gpu.name}:{per_node}"]
    if t.nodes > 1:
        flags += ["--nodes", str(t.nodes)]
    return flags


def _plan_flags(c: Candidate) -> list[str]:
    """The context, concurrency and offload that both commands name as the plan has them."""
    flags = ["--context", str(c.estimate.context)]
    if c.estimate.concurrency > 1:
        flags += ["--concurrency", str(c.estimate.concurrency)]
    if c.request.gpu_layers is not None:
        flags += ["--gpu-layers", str(c.request.gpu_layers)]
    if c.request.cpu_moe_layers:
        flags += ["--n-cpu-moe", str(c.request.cpu_moe_layers)]
    return flags


def deploy_command(c: Candidate, machine: PlannedMachine, opts: Options) -> tuple[str, ...] | None:
    """The `vramplan deploy` command that starts `c` (None for a runtime no deploy target runs by
    itself, whose `vramplan estimate` command is given instead)."""
    to = dict(opts.deploy_targets).get(c.runtime)
    if to is None:
        return None
    args = ["vramplan", "deploy", c.variant.id, "--target", to, "--quant", c.quant.name]
    args += _gpu_flags(c, machine)
    if c.estimate.host.total_bytes and c.request.host_memory_bytes is not None and not c.cpu_plan:
        # layers or experts in host RAM beside the GPUs: the deploy checks the RAM planned for, as the
        # estimate command does (a deploy for named GPUs does not probe this machine's RAM)
        args += ["--host-memory", size_text(c.request.host_memory_bytes)]
    return (*args, *_plan_flags(c))


def estimate_command(c: Candidate, machine: PlannedMachine) -> tuple[str, ...]:
    """The `vramplan estimate` command that prints `c`'s plan (without the headroom)."""
    args = ["vramplan", "estimate", c.variant.id, "--quant", c.quant.name, "--runtime", c.runtime.value]
    args += _gpu_flags(c, machine)
    if c.estimate.host.total_bytes and c.request.host_memory_bytes is not None:
        # a plan that uses host RAM (a CPU plan or an offload) is checked against the RAM planned for
        args += ["--host-memory", size_text(c.request.host_memory_bytes)]
    return (*args, *_plan_flags(c))
