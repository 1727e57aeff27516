"""`vramplan recommend`: what a machine can run, best first, and what it would take to run the rest.

For every variant x quantization x runtime that loads it, the estimator plans the machine's layouts
(search.py): all the GPUs of a node (tensor parallel over them, pipeline parallel over `--nodes`), the
fewest GPUs that hold the same plan, and for llama.cpp / Ollama a partial offload to host RAM
(offload.py). A plan fits when every GPU's estimated total stays within what the runtime may use less a
headroom. What fits is ranked by quality while the difference is larger than the evaluations' noise,
then by an upper bound of the decode speed (quality.py, vramplan/speed.py); plans below a usable speed
are listed apart. The better options that do not fit are explained (misfit.py). docs/recommend.md
states every rule and its basis.

The modules: machine (the machine planned for), options (what is asked and answered), quality (scores,
quantization loss, the order), plan (one combination), offload, search, misfit, commands.
"""

from __future__ import annotations

from vramplan.recommend.commands import deploy_command, estimate_command
from vramplan.recommend.machine import PlannedMachine, machine_for
from vramplan.recommend.offload import offload_words
from vramplan.recommend.options import (
    DEFAULT_HEADROOM,
    DEFAULT_MIN_SPEED,
    DEFAULT_PER_MODEL,
    DEFAULT_TOP,
    MAX_NODES,
    MIN_CONTEXT,
    Candidate,
    Options,
    Recommendation,
    bytes_from_gib,
    check_options,
    headroom_from_percent,
)
from vramplan.recommend.quality import (
    QUALITY_METRICS,
    QUALITY_NOISE,
    RANK_LABELS,
    RUNTIME_ORDER,
    loss_class,
    quality_groups,
    quality_score,
    quant_rank,
    rank_key,
)
from vramplan.recommend.search import recommend

__all__ = [
    "DEFAULT_HEADROOM",
    "DEFAULT_MIN_SPEED",
    "DEFAULT_PER_MODEL",
    "DEFAULT_TOP",
    "MAX_NODES",
    "MIN_CONTEXT",
    "QUALITY_METRICS",
    "QUALITY_NOISE",
    "RANK_LABELS",
    "RUNTIME_ORDER",
    "Candidate",
    "Options",
    "PlannedMachine",
    "Recommendation",
    "bytes_from_gib",
    "check_options",
    "deploy_command",
    "estimate_command",
    "headroom_from_percent",
    "loss_class",
    "machine_for",
    "offload_words",
    "quality_groups",
    "quality_score",
    "quant_rank",
    "rank_key",
    "recommend",
]
