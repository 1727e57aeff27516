"""Every distinct SGLang command line `vramplan deploy` writes, through SGLang's own parser.

Two halves, two interpreters (SGLang needs torch; vramplan's venv has none):

  python ci/sglang_check.py --sglang-python VENV/bin/python [--keep DIR]
      In the project's venv: plans and renders every bundle of each target that runs SGLang (each
      catalog variant x quantization SGLang loads x layout: the smallest node that fits, a full 8-GPU
      node, two or more nodes; KV dtypes bf16 / fp8; a longer context with several requests; a
      served name with spaces and quotes), reads the `python -m sglang.launch_server` argument lists
      out of the written files (serve.sh run under bash with a stand-in python, docker-compose.yaml's
      entrypoint and command after Compose's interpolation, Kubernetes containers after `$(VAR)`
      expansion: the readers of ci/vllm_check.py), writes a config.json per checkpoint from the
      catalog's architecture, then runs the second half with VENV's python.
  VENV/bin/python ci/sglang_check.py --check WORK.json
      In a venv with SGLang (installed without its dependencies beside vLLM and torch, see .ci/run):
      each argument list through `sglang.srt.server_args.prepare_server_args`, the function
      `python -m sglang.launch_server` itself calls: SGLang's argparse parser (flag names, choices,
      types) and `ServerArgs.__post_init__`'s checks. The model path is a local folder holding the
      checkpoint's config.json (offline, no weights). A failure prints the command line and SGLang's
      error; the exit status is 1 when any line fails.

What this does not reach: what SGLang checks only once it has GPUs (the memory it finds, attention
backends, quantization kernels) or a reachable --dist-init-addr.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vllm_check

ROOT = Path(__file__).resolve().parent.parent
HEAD = vllm_check.HEAD
LAUNCH = ["-m", "sglang.launch_server"]

# --------------------------------------------------------------------------- first half: vramplan


def _fake_python(bin_dir: Path) -> Path:
    """A stand-in for the python serve.sh runs: `-c ...` (its `import sglang` probe) succeeds, and
    anything else writes its arguments to $ARGV_OUT."""
    return vllm_check.fake_program(bin_dir, "python3", probe=True)


def from_serve_sh(script: Path, bin_dir: Path, rank: int, nodes: int) -> list[str]:
    """The arguments serve.sh passes to python on the node of `rank`, run by bash itself."""
    env = {"PYTHON": str(bin_dir / "python3")}
    return vllm_check.from_serve_sh(script, bin_dir, rank, nodes, "python", env)


def sglang_lines(
    bundle_dir: Path, files: list[str], nodes: int, bin_dir: Path
) -> list[tuple[str, list[str]]]:
    """(where, argv after `python -m sglang.launch_server`) of every SGLang command line in a bundle."""
    found: list[tuple[str, list[str]]] = []
    ranks = range(min(nodes, 2))  # the head and one worker (workers differ only in their rank)
    for name in files:
        path = bundle_dir / name
        if name == "serve.sh":
            found += [(f"{name} (node rank {r})", from_serve_sh(path, bin_dir, r, nodes)) for r in ranks]
        elif name in ("docker-compose.yaml", "compose.yaml"):
            found += [(f"{name} (service {svc})", a) for svc, a in vllm_check.from_compose(path)]
        elif name.endswith((".yaml", ".yml")):
            found += [(name, a) for a in vllm_check.from_k8s(path)]
    lines = []
    for where, argv in found:
        for i in range(len(argv) - 1):
            if argv[i : i + 2] == LAUNCH:
                lines.append((where, argv[i + 2 :]))
                break
        else:
            if any("sglang.launch_server" in a for a in argv):
                raise RuntimeError(
                    f"{bundle_dir / where}: a shell runs sglang.launch_server; this reads argument lists"
                )
    return lines


def sglang_targets() -> list[str]:
    """The deploy targets that can run SGLang (deploy/targets.py's registry)."""
    from vramplan.deploy.targets import TARGETS
    from vramplan.runtimes import Runtime

    return [t.name for t in TARGETS.values() if Runtime.SGLANG in t.runtimes]


def plans(catalog: Any) -> list[tuple[str, dict[str, Any]]]:
    """(label, deploy options) for every catalog variant and quantization SGLang loads."""
    from vramplan.runtimes import Runtime

    single = [("h100-80gb", n) for n in (1, 2, 4, 8)] + [("h200", 8), ("b200", 8)]
    multi = [("h100-80gb", 8, 2), ("h200", 8, 2), ("b200", 8, 2), ("h200", 8, 4)]
    out = []
    for v in catalog.variants:
        for q in v.quants:
            if Runtime.SGLANG not in q.runtimes:
                continue
            base = {"model": v.id, "quant": q.name}
            for target in sglang_targets():
                b = base | {"target": target}
                out.append((f"{v.id} {q.name} {target} smallest node", b | {"try": single}))
                out.append((f"{v.id} {q.name} {target} 8 x h200", b | {"try": [("h200", 8)]}))
                out.append((f"{v.id} {q.name} {target} nodes", b | {"try_multi": multi}))
            sg = base | {"target": "sglang"}
            for kv in ("bf16", "fp8"):  # SGLang has no fp16 choice (deploy/sglang.py _SGLANG_KV)
                out.append((f"{v.id} {q.name} sglang kv {kv}", sg | {"try": single, "kv": kv}))
            out.append(
                (
                    f"{v.id} {q.name} sglang 16k context x 4",
                    sg | {"try": single, "context": 16384, "concurrency": 4},
                )
            )
    first = catalog.variants[0]
    out.append(
        (
            f"{first.id} sglang served name with spaces and quotes",
            {"model": first.id, "target": "sglang", "try": [("h100-80gb", 1)], "served": 'R1 "it\'s" $x'},
        )
    )
    return out


def render(work: Path) -> dict[str, Any]:
    """Plan and write every bundle under `work`; the command lines and checkpoints to check."""
    os.environ["HF_HOME"] = str(work / "hf")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["VRAMPLAN_HOME"] = str(work / "vramplan")
    from vramplan.catalog import load_catalog
    from vramplan.deploy import prepare, write
    from vramplan.errors import VramplanError
    from vramplan.hardware import parse_gpu
    from vramplan.precision import KVDtype
    from vramplan.request import Choices, resolve_model
    from vramplan.runtimes import Runtime

    catalog = load_catalog()
    bin_dir = work / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    _fake_python(bin_dir)
    todo = plans(catalog)
    lines: dict[str, dict[str, Any]] = {}
    models: dict[str, dict[str, Any]] = {}
    refused: list[tuple[str, str]] = []
    for n, (label, opt) in enumerate(todo):
        tries = [(g, c, 1) for g, c in opt.get("try", [])] + list(opt.get("try_multi", []))
        bundle, last = None, ""
        for gpu, count, nodes in tries:
            choices = Choices(
                model=opt["model"],
                quant=opt.get("quant"),
                gpu=parse_gpu(f"{gpu}:{count}"),
                nodes=nodes,
                context=opt.get("context"),
                concurrency=opt.get("concurrency", 1),
                kv_cache_dtype=KVDtype(opt.get("kv", "auto")),
                runtime=Runtime.SGLANG,  # a target that runs several runtimes (k8s) is asked for SGLang
            )
            try:
                bundle = prepare(
                    catalog,
                    choices,
                    None,
                    opt["target"],
                    out=work / "bundles" / str(n),
                    served_name=opt.get("served"),
                )
                break
            except VramplanError as exc:
                last = str(exc)
        if bundle is None:
            refused.append((label, last))
            continue
        write(bundle, force=True)
        plan = bundle.plan
        resolved = resolve_model(catalog, Choices(model=opt["model"], quant=opt.get("quant")))
        quant = resolved.variant.plan_quant(plan.quant) if resolved.quant is None else resolved.quant
        dtype = "float16" if quant.scheme.base_dtype == "fp16" else "bfloat16"
        models[plan.repo] = {
            "config": vllm_check.config_json(resolved.variant.architecture, vllm_check._storage(quant), dtype)
        }
        found = sglang_lines(bundle.out, [f.name for f in bundle.files], plan.nodes, bin_dir)
        if not found:
            raise RuntimeError(f"{bundle.out}: no SGLang command line in {[f.name for f in bundle.files]}")
        for where, argv in found:
            if argv[:2] != ["--model-path", plan.repo]:
                raise RuntimeError(
                    f"{bundle.out / where}: expected `--model-path {plan.repo}`, got {argv[:2]}"
                )
            entry = lines.setdefault(json.dumps(argv), {"argv": argv, "model": plan.repo, "from": []})
            entry["from"].append(f"{label}: {where}")
    return {"lines": list(lines.values()), "models": models, "refused": refused, "plans": len(todo)}


# --------------------------------------------------------------------------- second half: SGLang


def check(work_file: Path) -> int:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    work = json.loads(work_file.read_text())
    root = work_file.parent / "models"
    folders = {}
    for i, (repo, m) in enumerate(sorted(work["models"].items())):
        folder = root / str(i)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(m["config"], indent=1))
        folders[repo] = str(folder)

    t0 = time.monotonic()
    import sglang
    from sglang.srt.server_args import prepare_server_args

    print(f"SGLang {sglang.__version__}: imported in {time.monotonic() - t0:.1f} s", flush=True)
    failures = 0
    for n, line in enumerate(work["lines"], 1):
        argv = list(line["argv"])
        shown = "python -m sglang.launch_server " + " ".join(argv)
        argv[1] = folders[line["model"]]
        t1 = time.monotonic()
        try:
            args = prepare_server_args(argv)
            got = f"tp {args.tp_size} pp {args.pp_size} dp {args.dp_size} nnodes {args.nnodes}"
            print(f"ok   {n:3d} {time.monotonic() - t1:5.1f} s  {got}  {shown}", flush=True)
        except SystemExit as exc:  # argparse: the message went to stderr
            failures += 1
            print(
                f"FAIL {n:3d}  {shown}\n     from: {line['from'][0]}\n     SGLang's parser exited {exc.code}",
                flush=True,
            )
        except Exception as exc:
            failures += 1
            last = "".join(traceback.format_exception_only(exc)).strip()
            print(f"FAIL {n:3d}  {shown}\n     from: {line['from'][0]}\n     SGLang: {last}", flush=True)
    total = len(work["lines"])
    print(f"{total - failures} passed, {failures} failed", flush=True)
    return 1 if failures else 0


# --------------------------------------------------------------------------- entry


def main() -> int:
    return vllm_check.two_halves("SGLang", __file__, __doc__ or "", render, check)


if __name__ == "__main__":
    sys.exit(main())
