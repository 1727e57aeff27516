"""Regenerate the docs that are derived from the code: docs/cli.md (from --help), docs/models.md
(from the catalog), docs/gpus.md (from the GPU spec table), and the table of docs/deploy.md that
shows the numbers the reference bundles hold (read back from the files `vramplan deploy` writes).
`python docs/generate.py` writes them; `--check` fails when they are stale (tests/test_docs.py runs
that)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from vramplan.gpus import GPUSpec

DOCS = Path(__file__).resolve().parent


def _commands(group: click.Group, prefix: list[str]) -> list[tuple[list[str], click.Command]]:
    # list_commands / get_command, not `group.commands`: the top-level group loads commands lazily
    ctx = click.Context(group)
    out: list[tuple[list[str], click.Command]] = []
    for name in sorted(group.list_commands(ctx)):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, name
        out.append(([*prefix, name], cmd))
        if isinstance(cmd, click.Group):
            out += _commands(cmd, [*prefix, name])
    return out


# The words the commands print, each in one sense (the glossary closes docs/cli.md).
GLOSSARY = """## Glossary

The words every command prints, each in one sense.

- **weights**: the model's parameters as the runtime loads them, in the quantization's storage
  format (GGUF blocks, FP8 with its scales, bf16, ...); split over the GPUs by tensor or pipeline
  parallelism, with any offloaded part in host RAM.
- **KV cache**: the keys and values kept for every token of every request, so that a token attends to
  the ones before it; it grows with context x concurrency and with the KV cache type (`--kv-cache-dtype`).
  vLLM and SGLang allocate a pool of it up front, llama.cpp and Ollama a fixed number of cells.
- **activations** (the `activ.` column; llama.cpp and Ollama call it the **compute buffer**): the
  working memory of one forward pass over the largest batch the runtime schedules, freed and reused
  between steps but reserved at start-up.
- **overhead**: what the runtime holds besides the three above: the CUDA context, cuBLAS and NCCL
  buffers, vLLM's CUDA graphs, SGLang's reserve; each rule names its source (docs/estimation.md).
- **usable**: the share of a GPU the runtime lets itself fill (vLLM's `--gpu-memory-utilization`,
  SGLang's `--mem-fraction-static`, all of it for llama.cpp and Ollama), less memory already in use.
- **headroom** (`recommend --headroom`): a share of the usable memory a plan leaves free on purpose.
- **fits**: every GPU's total (and the host part's, when there is one) is at most its usable memory;
  `does not fit` names the device that overflows first; `fit unknown` means no capacity was given.
- **total**: the sum of the parts on every device of the plan, GPUs and host RAM together; the
  estimate says how much of it is host RAM.
- **TP / PP / DP** (tensor / pipeline / data parallel): TP splits every layer over the GPUs of a node,
  PP gives each GPU or node a range of layers, DP runs whole copies of the model side by side; a plan
  uses TP x PP GPUs per copy.
- **offload**: weights kept in host RAM instead of on a GPU (llama.cpp's `--n-gpu-layers` and
  `--n-cpu-moe`, Ollama's `num_gpu`); they run on the CPU, so the plan fits at a lower speed.
- **host RAM**: the machine's memory, used for offloaded weights and for plans without a GPU (CPU
  inference); on Apple silicon the same unified memory as the GPU's.
- **context**: the tokens of one request (prompt and answer); **concurrency**: the requests served at
  once.
- **settings**: the runtime's own flags that give the plan (`vllm serve ...`, `llama-server ...`,
  Ollama's `num_ctx` and environment); **inputs**: the values the plan read, each with where it came
  from (a flag, the probe, the runtime's default).
"""


def cli_reference() -> str:
    from vramplan.cli import cli

    parts = [
        "# Command-line reference\n",
        "Generated from `--help` by `python docs/generate.py`; do not edit by hand.\n",
    ]
    root = click.Context(cli, info_name="vramplan", terminal_width=100, max_content_width=100)
    parts.append(f"## vramplan\n\n```\n{cli.get_help(root)}\n```\n")
    for path, cmd in _commands(cli, []):
        parent = root
        for name in path[:-1]:
            parent = click.Context(parent.command.get_command(parent, name), info_name=name, parent=parent)  # type: ignore[attr-defined,arg-type]
        ctx = click.Context(cmd, info_name=path[-1], parent=parent, terminal_width=100, max_content_width=100)
        parts.append(f"## vramplan {' '.join(path)}\n\n```\n{cmd.get_help(ctx)}\n```\n")
    parts.append(GLOSSARY)
    return "\n".join(parts)


def _size(q: object) -> str:
    size = getattr(q, "size", None)
    return "-" if size is None else f"{size.text} ([source]({size.source.split(' ')[0]}))"


def models_reference() -> str:
    from vramplan.catalog import PLANNABLE_GGUF_TYPES, load_catalog

    cat = load_catalog()
    lines = [
        "# Models in the catalog\n",
        "Generated from `model_catalog.yaml` by `python docs/generate.py`; do not edit by hand. "
        "Parameter counts are computed from each architecture (vramplan/arch.py).\n",
        "The tables list the published quantizations. Any other file type llama-quantize makes ("
        + ", ".join(f"`{t}`" for t in PLANNABLE_GGUF_TYPES)
        + ") can be planned for every model with `--quant`: it is sized by llama-quantize's per-tensor "
        "rules (vramplan/quantmix.py), runs on llama.cpp and Ollama, and the plan notes that no such file "
        "is published.\n",
        "A catalog of your own (`--catalog FILE` or `VRAMPLAN_CATALOG`, `:`-separated) adds models in "
        "the format of `model_catalog.yaml` (`version: 1`, `architectures:`, `variants:`); an unknown "
        "key, a missing field or a wrong type is an error naming the file, the entry and the field, and "
        "a `version:` other than 1 is refused as unsupported. An entry whose `id` the catalog already "
        "holds is an error unless it says `override: true`; it then replaces that entry whole, "
        "aliases and Ollama tags included (list them again to keep them). GPUs of your own: "
        "docs/hardware.md.\n",
    ]
    for v in cat.variants:
        a = v.architecture
        lines.append(f"## {v.name} (`{v.id}`)\n")
        lines.append(
            f"- Hugging Face: [{v.hf_repo}](https://huggingface.co/{v.hf_repo}); architecture "
            f"`{a.model_type}` ([config.json]({v.architecture_source})); {v.params:,} parameters; "
            f"{a.num_hidden_layers} layers; max context {a.max_position_embeddings}"
        )
        if v.aliases:
            lines.append(f"- aliases: {', '.join(f'`{x}`' for x in v.aliases)}")
        if v.quality:
            scores = ", ".join(f"{k} {val:g}" for k, val in v.quality)
            lines.append(f"- quality: {scores} ([source]({v.quality_source}))")
        lines.append("")
        lines.append("| quant | format | runtimes | needs | published size | where |")
        lines.append("|---|---|---|---|---|---|")
        for q in v.quants:
            where = ", ".join(f"`{t}`" for t in q.ollama_tags) or (f"`{q.repo}`" if q.repo else "-")
            runtimes = ", ".join(r.value for r in q.runtimes)
            lines.append(
                f"| `{q.name}` | {q.format.value} | {runtimes} | {q.requires or '-'} | {_size(q)} | {where} |"
            )
        lines.append("")
    return "\n".join(lines)


def memory_mib(g: GPUSpec) -> str:
    """A card's memory in MiB; Apple silicon: Metal's share of the unified memory."""
    if g.unified_memory_bytes is None:
        return str(g.memory_bytes // (1 << 20))
    return f"{g.memory_bytes // (1 << 20)} (Metal's share of {g.unified_memory_bytes // (1 << 20)} unified)"


def gpus_reference() -> str:
    from vramplan.hardware import GPU_SPECS

    lines = [
        "# GPUs in the spec table\n",
        "Generated from `vramplan/hardware.py` by `python docs/generate.py`; do not edit by hand. "
        "Memory is the total NVML / nvidia-smi reports (MiB); on Apple silicon, the share of the unified "
        "memory that Metal lets the GPU use ([estimation.md](estimation.md#apple-silicon)); bandwidth is the "
        "vendor's peak (GB/s). "
        "How the probe maps the names NVML reports to these entries: [hardware.md](hardware.md).\n",
        "| `--gpu` | card | memory (MiB) | bandwidth (GB/s) | compute capability | FP8 | FP4 | interconnect "
        "| aliases | NVML names | source |",
        "|---|---|---:|---:|---|---|---|---|---|---|---|",
    ]
    for g in GPU_SPECS:
        cc = "-" if g.compute_capability is None else f"{g.compute_capability[0]}.{g.compute_capability[1]}"
        aliases = ", ".join(f"`{a}`" for a in g.aliases) or "-"
        names = ", ".join(f"`{n}`" for n in g.nvml_names)
        lines.append(
            f"| `{g.name}` | {g.label} | {memory_mib(g)} | {g.bandwidth_gbps:g} | {cc} "
            f"| {'yes' if g.fp8 else 'no'} | {'yes' if g.fp4 else 'no'} | {g.interconnect} | {aliases} "
            f"| {names} | {g.source} |"
        )
    lines.append("")
    return "\n".join(lines)


# The reference plans of docs/deploy.md (the golden bundles' plans, tests/test_deploy_golden.py).
DEPLOY_PLANS: list[tuple[str, list[str]]] = [
    ("deepseek-r1-distill-qwen-1.5b", ["--gpu", "l4"]),
    ("deepseek-r1-distill-qwen-32b", ["--gpu", "h100-80gb:2"]),
    ("deepseek-r1", ["--gpu", "h200:8"]),
    ("deepseek-r1", ["--gpu", "h100-80gb:8", "--nodes", "2"]),
]
VLLM_FLAGS = [
    "--tensor-parallel-size",
    "--pipeline-parallel-size",
    "--data-parallel-size",
    "--max-model-len",
    "--max-num-seqs",
    "--max-num-batched-tokens",
    "--gpu-memory-utilization",
    "--kv-cache-dtype",
    "--quantization",
]


def deploy_bundle(model: str, args: list[str]) -> dict[str, str]:
    """The files `vramplan deploy MODEL ARGS` writes (name -> text), the record left out."""
    import tempfile

    from click.testing import CliRunner

    from vramplan.cli import cli

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bundle"
        res = CliRunner().invoke(cli, ["deploy", model, *args, "--out", str(out)], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return {p.name: p.read_text(encoding="utf-8") for p in sorted(out.iterdir()) if p.name[0] != "."}


def serve_flags(serve_sh: str) -> dict[str, str | None]:
    """The flags of serve.sh's `vllm serve` command line (value None for a switch)."""
    import shlex

    text = serve_sh.replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if ln.lstrip().startswith("exec vllm serve"))
    words = shlex.split(line)
    flags: dict[str, str | None] = {}
    for i, w in enumerate(words):
        if w.startswith("--"):
            nxt = words[i + 1] if i + 1 < len(words) else "--"
            flags[w] = None if nxt.startswith(("--", "$")) else nxt
    return flags


def _find(doc: object, key: str) -> list[object]:
    """Every value under `key` anywhere in a parsed YAML document."""
    found: list[object] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k == key:
                found.append(v)
            found += _find(v, key)
    elif isinstance(doc, list):
        for v in doc:
            found += _find(v, key)
    return found


def k8s_values(files: dict[str, str]) -> tuple[str, str]:
    """(the startup probe's budget in minutes, the model cache's size) of a Kubernetes bundle."""
    import yaml

    docs = [d for name, text in files.items() if name.endswith(".yaml") for d in yaml.safe_load_all(text)]
    probes = [p for d in docs for p in _find(d, "startupProbe") if isinstance(p, dict)]
    minutes = "-"
    if probes:
        p = probes[0]
        minutes = f"{int(p['failureThreshold']) * int(p.get('periodSeconds', 10)) // 60}"
    sizes = [
        r["storage"] for d in docs for r in _find(d, "requests") if isinstance(r, dict) and "storage" in r
    ]
    return minutes, str(sizes[0]) if sizes else "-"


def deploy_values() -> str:
    """The numbers the reference bundles hold, read back from the rendered files."""
    head = ["plan", *[f"`{f}`" for f in VLLM_FLAGS], "k8s startup probe (min)", "k8s model cache"]
    lines = [
        "vLLM, read back from `serve.sh` (the startup probe and the cache from the `k8s` bundle):\n",
        "| " + " | ".join(head) + " |",
        "|---|" + "---:|" * (len(head) - 1),
    ]
    for model, args in DEPLOY_PLANS:
        flags = serve_flags(deploy_bundle(model, ["--target", "vllm", *args])["serve.sh"])
        minutes, cache = k8s_values(deploy_bundle(model, ["--target", "k8s", *args]))
        cells = [f"`{model} {' '.join(args)}`"]
        cells += [str(flags.get(f) or "-") for f in VLLM_FLAGS]
        lines.append("| " + " | ".join([*cells, minutes, cache]) + " |")
    env_names = [
        "OLLAMA_NUM_PARALLEL",
        "OLLAMA_KV_CACHE_TYPE",
        "OLLAMA_LOAD_TIMEOUT",
        "OLLAMA_MAX_LOADED_MODELS",
    ]
    params = ["num_ctx", "num_gpu", "temperature", "top_p"]
    head = ["plan", *[f"`{p}`" for p in params], *[f"`{e}`" for e in env_names]]
    lines += [
        "",
        "Ollama (`Modelfile` and `ollama.env`; the 671B at a 32768-token context, as Ollama runs it):\n",
        "| " + " | ".join(head) + " |",
        "|---|" + "---:|" * (len(head) - 1),
    ]
    for model, args in DEPLOY_PLANS[:3]:
        extra = ["--context", "32768"] if model == "deepseek-r1" else []
        files = deploy_bundle(model, ["--target", "ollama", *args, *extra])
        given = dict(ln.split()[1:3] for ln in files["Modelfile"].splitlines() if ln.startswith("PARAMETER "))
        env = dict(ln.split("=", 1) for ln in files["ollama.env"].splitlines() if ln and ln[0] != "#")
        cells = [f"`{model} {' '.join([*args, *extra])}`"]
        cells += [given.get(p, "-") for p in params] + [env.get(e, "-") for e in env_names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


TARGETS = {"cli.md": cli_reference, "models.md": models_reference, "gpus.md": gpus_reference}
# Parts of hand-written docs generated in place, between `<!-- generated: NAME -->` and
# `<!-- end generated: NAME -->`.
SECTIONS = {"deploy.md": {"deploy-values": deploy_values}}


def fill_sections(text: str, sections: dict[str, Callable[[], str]], name: str) -> str:
    for key, make in sections.items():
        start, end = f"<!-- generated: {key} -->\n", f"<!-- end generated: {key} -->"
        if start not in text or end not in text:
            raise SystemExit(f"docs/{name} lacks the markers of its generated part {key!r}")
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = f"{before}{start}{make()}{end}{after}"
    return text


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, make in TARGETS.items():
        text = make()
        path = DOCS / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    for name, sections in SECTIONS.items():
        path = DOCS / name
        old = path.read_text(encoding="utf-8")
        text = fill_sections(old, sections, name)
        if check:
            if text != old:
                stale.append(name)
        elif text != old:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale docs: {', '.join(stale)}; run `python docs/generate.py`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
