"""What `recommend` is asked (Options) and what it answers (Candidate, Recommendation), with the checks of
the options."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vramplan.catalog import Quant, Variant
from vramplan.errors import PlanError
from vramplan.estimate import Estimate, Request
from vramplan.recommend.machine import GiB, PlannedMachine
from vramplan.runtimes import Runtime, rules_for

# A candidate planned without --context takes the runtime's default context; when that does not fit
# it is planned at the largest context that does, down to MIN_CONTEXT: Ollama's smallest default
# num_ctx (ollama server/routes.go), room for a question and a short reasoning trace. (DeepSeek
# evaluates R1 with up to 32768 generated tokens: deepseek-ai/DeepSeek-R1 README, "Evaluation".)
MIN_CONTEXT = 4096
DEFAULT_HEADROOM = 0.10
DEFAULT_TOP = 10
DEFAULT_PER_MODEL = 2
MAX_NODES = 16  # the most nodes a misfit explanation searches
# Plans whose decode-speed bound is below this many tokens per second are listed apart, as "fits, but
# slow". A person reads about 5.3 tokens/s: adults read English non-fiction silently at 238 words per
# minute on average (Brysbaert 2019, "How many words do we read per minute?", Journal of Memory and
# Language 109, 104047, a meta-analysis of 190 studies), and a token is about 3/4 of an English word
# (OpenAI, "What are tokens and how to count them?"): 238 / 0.75 / 60 = 5.3 tokens/s. The figure
# compared is a ceiling (speed.py) that real decoding reaches about half of: llama.cpp's own benchmark
# table in ggml-org/llama.cpp PR 26284 measures llama 8B Q4_K_M (4.58 GiB) at 105.8 tokens/s (tg64) on
# an RX 7900 XTX, whose 960 GB/s bound it at 195 tokens/s: 54 %. So a plan reads at about reading speed
# when its bound is 5.3 / 0.54 = 9.8 tokens/s: 10. R1 also writes its reasoning before the answer.
DEFAULT_MIN_SPEED = 10.0


# --------------------------------------------------------------------------- options and results


@dataclass(frozen=True)
class Options:
    context: int | None = None  # None: each runtime's default (lowered to fit, not below MIN_CONTEXT)
    concurrency: int = 1
    headroom: float = DEFAULT_HEADROOM  # share of each GPU's usable memory (and host RAM) kept free
    runtimes: tuple[Runtime, ...] = ()  # empty: all
    quants: tuple[str, ...] = ()  # quantization names (any case); empty: all
    models: tuple[str, ...] = ()  # catalog names (ids, aliases, Ollama tags); empty: all
    offload: bool = True  # plan llama.cpp / Ollama partial offload to host RAM
    top: int = DEFAULT_TOP  # rows shown (one per variant and quantization class)
    per_model: int = DEFAULT_PER_MODEL  # rows per variant at most (0: no limit)
    min_speed: float = DEFAULT_MIN_SPEED  # tokens/s: plans with a lower speed bound are listed apart
    # runtime -> the `vramplan deploy --target` that runs it by itself (the deploy registry's
    # `deploy_targets()`, which the CLI passes: the core does not import deploy); a runtime without
    # one gets its `vramplan estimate` command instead
    deploy_targets: tuple[tuple[Runtime, str], ...] = ()


@dataclass(frozen=True)
class Candidate:
    request: Request
    estimate: Estimate
    fits: bool
    reason: str  # how it fits, or what would make it fit
    quality: float | None
    quant_rank: int
    tokens_per_second: float | None
    offload: str | None = None  # None, "layers" (--n-gpu-layers) or "experts" (--n-cpu-moe)
    notes: tuple[str, ...] = ()
    quality_group: int = 0  # the variant's quality group (quality.quality_groups), 0 the best
    slow: bool = False  # its speed bound is below --min-speed
    deploy_command: tuple[str, ...] | None = None
    estimate_command: tuple[str, ...] = ()
    # the other runtimes and layouts that fit the same variant and quantization, best first
    alternatives: tuple[Candidate, ...] = ()

    @property
    def variant(self) -> Variant:
        return self.request.variant

    @property
    def quant(self) -> Quant:
        return self.request.quant

    @property
    def runtime(self) -> Runtime:
        return self.request.runtime

    @property
    def cpu_plan(self) -> bool:
        return self.estimate.cpu_plan

    @property
    def gpus_used(self) -> int:
        return 0 if self.cpu_plan else self.estimate.topology.gpus_used

    @property
    def per_gpu_peak_bytes(self) -> int:
        """The fullest GPU's total (the host total for a CPU plan)."""
        if self.cpu_plan:
            return self.estimate.host.total_bytes
        return max(d.total_bytes for d in self.estimate.per_gpu)

    @property
    def host_bytes(self) -> int:
        return self.estimate.host.total_bytes


@dataclass(frozen=True)
class Recommendation:
    machine: PlannedMachine
    options: Options
    candidates: tuple[Candidate, ...]  # what fits, best first: one per variant and quantization class
    misfits: tuple[Candidate, ...]  # better options that do not fit, each with what would make it fit
    fitting: int  # plans that fit among those planned (every runtime and layout)
    rows: int  # rows before --top (one per variant and quantization class, --per-model per variant)
    planned: int  # variant x quantization x runtime combinations planned
    complete: bool = True  # False: variants ranked below the rows shown were not planned
    notes: tuple[str, ...] = field(default_factory=tuple)
    # what fits but decodes slower than --min-speed, best first (at most --top), and how many rows
    slow: tuple[Candidate, ...] = ()
    slow_rows: int = 0


# --------------------------------------------------------------------------- the entry point


def check_options(opts: Options, machine: PlannedMachine) -> None:
    if opts.context is not None and opts.context <= 0:
        raise PlanError(f"--context must be at least 1, got {opts.context}")
    if opts.concurrency <= 0:
        raise PlanError(f"--concurrency must be at least 1, got {opts.concurrency}")
    if opts.top <= 0:
        raise PlanError(f"--top must be at least 1, got {opts.top}")
    if opts.per_model < 0:
        raise PlanError(f"--per-model must be 0 (no limit) or more, got {opts.per_model}")
    if not (math.isfinite(opts.min_speed) and opts.min_speed >= 0):
        raise PlanError(
            f"--min-speed must be 0 (no limit) or a positive number of tokens/s, got {opts.min_speed:g}"
        )
    if not 0 <= opts.headroom < 0.9:
        raise PlanError(f"--headroom must be at least 0 and below 90 %, got {opts.headroom * 100:g} %")
    if opts.runtimes and machine.cpu_only and not any(rules_for(r).runs_on_host for r in opts.runtimes):
        names = " and ".join(r.value for r in opts.runtimes)
        need = "needs" if len(opts.runtimes) == 1 else "need"
        raise PlanError(f"{names} {need} a GPU and none was found; plan for one with --gpu NAME[:COUNT]")
    if opts.runtimes and machine.gpu is not None and machine.gpu.unified:
        if not any(rules_for(r).metal for r in opts.runtimes):
            names = " and ".join(r.value for r in opts.runtimes)
            raise PlanError(
                f"{names} {'has' if len(opts.runtimes) == 1 else 'have'} no Metal backend and cannot "
                f"use the GPU of {machine.gpu.name} (Apple silicon); "
                "plan with --runtime llama.cpp or --runtime ollama"
            )
    if opts.runtimes and machine.nodes > 1 and not any(rules_for(r).spans_nodes for r in opts.runtimes):
        names = " and ".join(r.value for r in opts.runtimes)
        raise PlanError(f"{names} run on one node; --nodes needs vllm or sglang")


def headroom_from_percent(percent: float) -> float:
    """`--headroom 10` -> 0.10 (at least 0, below 90 %)."""
    if not 0 <= percent < 90:
        raise PlanError(f"--headroom must be at least 0 and below 90 (percent), got {percent:g}")
    return percent / 100


def bytes_from_gib(gib: float | None, flag: str) -> int | None:
    """A size given in GiB on the command line, in bytes."""
    if gib is None:
        return None
    if not math.isfinite(gib) or gib <= 0:
        raise PlanError(f"{flag} must be a positive size in GiB, got {gib:g}")
    return int(gib * GiB)
