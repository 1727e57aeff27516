"""`vramplan deploy`: turn a memory plan into the files that run it, write them, and start them.

    prepare(...)  -> Bundle    the plan (deploy.plan, with the settings of the runtime the target runs),
                               rendered from templates/<target>/ (deploy.render)
    write(bundle) -> Written   atomic writes into --out, never over a different file without --force;
                               a record of the files lets --force replace an earlier bundle whole
    launch(bundle, ...)        the target's own launch (deploy.launch): Ollama through its Python
                               client, vLLM through docker compose or serve.sh, Kubernetes through kubectl

The targets are one registry (deploy.targets): a target is one module (deploy/ollama.py, vllm.py,
k8s.py, sglang.py, llamacpp.py) and one template folder.

jinja2, ollama and rich are imported inside the functions that use them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from vramplan.catalog import Catalog
from vramplan.deploy.options import DeployOptions, check_options
from vramplan.deploy.plan import DeployPlan, make_plan
from vramplan.deploy.render import RenderedFile, render
from vramplan.hardware import Machine
from vramplan.request import Choices

if TYPE_CHECKING:
    from vramplan.deploy.writer import Written

__all__ = ["Bundle", "DeployOptions", "DeployPlan", "default_out", "prepare", "write"]


@dataclass(frozen=True)
class Bundle:
    plan: DeployPlan
    out: Path
    files: tuple[RenderedFile, ...]
    options: DeployOptions = field(default_factory=DeployOptions)  # --image, --namespace, ...

    @property
    def paths(self) -> list[Path]:
        return [self.out / f.name for f in self.files]


def default_out(plan: DeployPlan) -> Path:
    """./deploy/<model>-<target>/ (the model id with anything but letters, digits, '.', '_', '-' as '-')."""
    model = re.sub(r"[^A-Za-z0-9._-]+", "-", plan.model_id).strip(".-") or "model"
    return Path("deploy") / f"{model}-{plan.target}"


def prepare(
    catalog: Catalog,
    choices: Choices,
    machine: Machine | None,
    target: str,
    *,
    out: Path | None = None,
    served_name: str | None = None,
    options: DeployOptions | None = None,
) -> Bundle:
    """Plan `choices` for the target named `target` (which fixes the runtime), estimate it and render
    the bundle with the deploy `options` (image, namespace, cache, ...; checked here first)."""
    from vramplan.deploy.targets import get_target, pinned_request, settings_for
    from vramplan.estimate import estimate
    from vramplan.request import build_request, default_runtime, resolve_model

    to = get_target(target)
    opts = check_options(options if options is not None else DeployOptions(), to.name, choices.nodes)
    resolved = resolve_model(catalog, choices)
    asked = choices.runtime
    if asked is None and resolved.quant is not None:
        # a name that fixes its build (an Ollama tag) names its runtime too, as in `vramplan estimate`
        named = default_runtime(resolved, resolved.quant)
        asked = named if named in to.runtimes else None
    runtime = to.runtime_for(asked)
    req = build_request(catalog, replace(choices, runtime=runtime), machine)
    est = estimate(req)
    pinned = pinned_request(req, est)
    if pinned is not None:  # the runtime's own default written out (SGLang's --mem-fraction-static)
        req, est = pinned, estimate(pinned)
    tag = (choices.model or "").strip() if resolved.via == "ollama" else None
    plan = make_plan(
        req, est, to.name, settings_for(runtime, choices.gguf), served_name=served_name, ollama_tag=tag
    )
    return Bundle(plan, out if out is not None else default_out(plan), tuple(render(plan, opts)), opts)


def write(bundle: Bundle, force: bool = False, command: Sequence[str] = ()) -> Written:
    """Write the bundle into its folder, with its record (the files, the vramplan version and
    `command`, the command line that made it); with `force`, replace the bundle written there before
    (deploy.writer)."""
    from vramplan import __version__
    from vramplan.deploy.writer import write_files

    return write_files(
        bundle.out, bundle.files, force, version=__version__, command=command, target=bundle.plan.target
    )
