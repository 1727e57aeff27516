"""Render a `DeployPlan` into the files of a bundle, from the jinja2 templates its target names
(`templates/<target>/`).

jinja2 runs with `StrictUndefined` (a missing value is an error, not an empty string) and
`keep_trailing_newline`. No template prints a user or catalog value bare: YAML gets `yaml` (a JSON
string, which YAML reads as a double-quoted scalar), Compose gets `compose` (the same, with `$`
doubled so Compose does not interpolate it), shell gets `sh` (`shlex.quote`), and comments and
Markdown prose get `oneline` (control characters escaped, so a newline cannot start a new line).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from vramplan.deploy.ollama import OLLAMA_IMAGE, OLLAMA_PORT
from vramplan.deploy.options import DeployOptions
from vramplan.deploy.plan import PROBE_PERIOD_S, DeployPlan
from vramplan.deploy.vllm import VLLM_IMAGE, VLLM_PORT, VLLM_VERSION
from vramplan.errors import RenderError
from vramplan.words import count

GiB = 1 << 30


@dataclass(frozen=True)
class RenderedFile:
    name: str  # path relative to the bundle folder
    text: str
    executable: bool = False


def yaml_quote(value: object) -> str:
    """A YAML scalar that reads back as exactly `value` (JSON is a subset of YAML's flow style)."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(str(value), ensure_ascii=True)


def compose_quote(value: object) -> str:
    """A YAML scalar for Compose files, where `$` starts an interpolation unless doubled."""
    if isinstance(value, (bool, int, float)) or value is None:
        return json.dumps(value)
    return yaml_quote(str(value).replace("$", "$$"))


def kube_quote(value: object) -> str:
    """A YAML scalar for Kubernetes `command`, `args` and `env` values, where `$(VAR)` is expanded
    unless written `$$(VAR)`: every `$` is doubled."""
    return compose_quote(value)


def sh_quote(value: object) -> str:
    return shlex.quote(str(value))


def oneline(value: object) -> str:
    """Text safe on one line of a comment or of Markdown: control characters become escapes."""
    text = json.dumps(str(value), ensure_ascii=False)[1:-1].replace('\\"', '"')
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def chomp(text: str) -> str:
    """Drop one trailing newline (a macro's last line; the calling line supplies its own)."""
    return text[:-1] if text.endswith("\n") else text


def gib(n: int | None) -> str:
    return "-" if n is None else f"{n / GiB:.2f} GiB"


def _environment() -> Any:
    import jinja2

    from vramplan.resources import data_path

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_path("templates"))),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.update(yaml=yaml_quote, compose=compose_quote, kube=kube_quote, sh=sh_quote)
    env.filters.update(oneline=oneline, gib=gib, chomp=chomp, count=count)  # count: 1 GPU, 2 GPUs
    return env


def context(plan: DeployPlan, options: DeployOptions | None = None) -> dict[str, Any]:
    opts = options if options is not None else DeployOptions()
    return {
        "plan": plan,
        "opts": opts,
        # the image the bundle runs: --image, else the one pinned for the runtime and the GPUs' vendor
        "image": opts.image or getattr(plan.settings, "image", VLLM_IMAGE),
        "est": plan.estimate,
        "vllm_version": VLLM_VERSION,
        "vllm_image": VLLM_IMAGE,
        "ollama_image": OLLAMA_IMAGE,
        "vllm_port": VLLM_PORT,
        "ollama_port": OLLAMA_PORT,
        "probe_period": PROBE_PERIOD_S,
    }


def render(plan: DeployPlan, options: DeployOptions | None = None) -> list[RenderedFile]:
    """Every file of the bundle for `plan` (its target's files) with the deploy `options`, in a stable
    order."""
    import jinja2

    from vramplan.deploy.targets import get_target

    opts = options if options is not None else DeployOptions()
    target = get_target(plan.target)
    env = _environment()
    ctx = context(plan, opts)
    ctx.update(target.template_values(plan, opts))
    ctx.update(plan.settings.template_values(lambda name, c: str(env.get_template(name).render(c)), ctx))
    out: list[RenderedFile] = []
    for template, name, executable in target.files(plan, opts):
        try:
            text = env.get_template(template).render(ctx)
        except jinja2.TemplateError as exc:  # a bug in a template, reported as such
            raise RenderError(f"cannot render {template}: {exc}") from exc
        out.append(RenderedFile(name, text, executable))
    return out
