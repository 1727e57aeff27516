"""Every distinct `vllm serve` command line `vramplan deploy` writes, built through vLLM itself.

Two halves, two interpreters (vLLM and vramplan pin different libraries, so each has its own venv):

  python ci/vllm_check.py --vllm-python VENV/bin/python [--keep DIR]
      In the project's venv: plans and renders every bundle (each catalog variant x quantization vLLM
      loads x target vllm / k8s x layout: the smallest node that fits, a full 8-GPU node, two or more
      nodes; KV dtypes auto / bf16 / fp8; and models read from a Hugging Face repo), reads the vLLM
      command lines out of the written files (serve.sh run under bash with a stand-in `vllm` on PATH,
      docker-compose.yaml's commands after Compose's interpolation, the Kubernetes containers' command
      and args after `$(VAR)` expansion), writes a config.json per checkpoint from the catalog's
      architecture, then runs the second half with VENV's python.
  VENV/bin/python ci/vllm_check.py --check WORK.json
      In vLLM's venv: each command line through `vllm serve`'s own argument parser and validation,
      then `EngineArgs.from_cli_args(...).create_engine_config()` with `load_format=dummy`, on the CPU
      platform and offline (no weights, no GPU, no network). A failure prints the command line and
      vLLM's error; the exit status is the number of failures (capped at 1).

      Then, once per model x TP x PP x EP, the model's layers as TP rank 0 builds them, on the meta
      device (vLLM's own linear, embedding and MoE layers divide every size by TP there), with the
      quantization left out and stand-in process groups that only know their sizes.

What this does not reach: what vLLM checks only on a GPU (quantization kernels and their shape limits,
such as whole 128-blocks of DeepSeek's FP8 or a group size per rank, attention backends, memory);
vramplan's tensor-parallel rule (vramplan/estimate.py `_tp_problem`) covers the FP8 blocks.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HEAD = "head.example"  # a name only: nothing is contacted

# --------------------------------------------------------------------------- first half: vramplan


# Fields each model type's config.json carries besides the catalog's architecture, as the published
# config.json files hold them (the catalog names each file's URL in `architectures: ...: source`).
_MODEL_TYPE = {
    "qwen2": {
        "architectures": ["Qwen2ForCausalLM"],
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "use_sliding_window": False,
        "sliding_window": 4096,
        "bos_token_id": 151643,
        "eos_token_id": 151643,
    },
    "llama": {
        "architectures": ["LlamaForCausalLM"],
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
        "bos_token_id": 128000,
        "eos_token_id": 128001,
    },
    "qwen3": {
        "architectures": ["Qwen3ForCausalLM"],
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
        "bos_token_id": 151643,
        "eos_token_id": 151645,
    },
    "deepseek_v3": {
        "architectures": ["DeepseekV3ForCausalLM"],
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000,
        "rope_scaling": {
            "type": "yarn",
            "factor": 40,
            "original_max_position_embeddings": 4096,
            "beta_fast": 32,
            "beta_slow": 1,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
        },
        "n_group": 8,
        "topk_group": 4,
        "topk_method": "noaux_tc",
        "scoring_func": "sigmoid",
        "norm_topk_prob": True,
        "routed_scaling_factor": 2.5,
        "moe_layer_freq": 1,
        "ep_size": 1,
        "attention_bias": False,
        "bos_token_id": 0,
        "eos_token_id": 1,
    },
}

# The quantization_config of each catalog storage, as the checkpoints the catalog names publish it:
# DeepSeek's block FP8 (deepseek-ai/DeepSeek-R1 config.json), compressed-tensors FP8-dynamic and
# W4A16 (the RedHatAI repos), AutoAWQ GEMM, and NVIDIA ModelOpt NVFP4.
_CT_FP8 = {
    "quant_method": "compressed-tensors",
    "format": "float-quantized",
    "quantization_status": "compressed",
    "ignore": ["lm_head"],
    "config_groups": {
        "group_0": {
            "targets": ["Linear"],
            "weights": {
                "num_bits": 8,
                "type": "float",
                "strategy": "channel",
                "dynamic": False,
                "symmetric": True,
            },
            "input_activations": {
                "num_bits": 8,
                "type": "float",
                "strategy": "token",
                "dynamic": True,
                "symmetric": True,
            },
        }
    },
}
_CT_W4A16 = {
    "quant_method": "compressed-tensors",
    "format": "pack-quantized",
    "quantization_status": "compressed",
    "ignore": ["lm_head"],
    "config_groups": {
        "group_0": {
            "targets": ["Linear"],
            "weights": {
                "num_bits": 4,
                "type": "int",
                "strategy": "group",
                "group_size": 128,
                "dynamic": False,
                "symmetric": True,
            },
        }
    },
}
_QUANT_CONFIG: dict[str, dict[str, Any]] = {
    "fp8-block128": {
        "quant_method": "fp8",
        "fmt": "e4m3",
        "activation_scheme": "dynamic",
        "weight_block_size": [128, 128],
    },
    "fp8-channel": _CT_FP8,
    "gptq-int4-g128": _CT_W4A16,
    "awq-int4-g128": {
        "quant_method": "awq",
        "bits": 4,
        "group_size": 128,
        "zero_point": True,
        "version": "gemm",
    },
    "nvfp4-g16": {
        "quant_method": "modelopt",
        "quant_algo": "NVFP4",
        "group_size": 16,
        "exclude_modules": ["lm_head"],
    },
}


def config_json(arch: Any, storage: str | None, dtype: str) -> dict[str, Any]:
    """A config.json for `arch` (vramplan.arch.Architecture) stored as `storage` (None: unquantized)."""
    from dataclasses import asdict

    cfg: dict[str, Any] = {k: v for k, v in asdict(arch).items() if v is not None}
    for derived in ("attention_bias", "qk_norm"):  # vramplan's flags, not config.json fields
        cfg.pop(derived, None)
    if arch.model_type == "qwen3":
        cfg["attention_bias"] = False
    if not arch.is_moe:
        for field in ("first_k_dense_replace", "num_nextn_predict_layers"):
            cfg.pop(field, None)
    cfg.update(_MODEL_TYPE[arch.model_type])
    cfg["torch_dtype"] = dtype
    if storage is not None:
        cfg["quantization_config"] = _QUANT_CONFIG[storage]
    return cfg


def _storage(quant: Any) -> str | None:
    from vramplan.precision import WeightFormat
    from vramplan.quantmix import _HF_STORAGE

    if quant.format in (WeightFormat.BF16, WeightFormat.FP16):
        return None
    storage = quant.scheme.storage or _HF_STORAGE[quant.format].value
    return str(storage)


# ---- reading the command lines out of the written files


def fake_program(bin_dir: Path, name: str, probe: bool = False) -> Path:
    """A stand-in for the program a serve.sh runs: it writes its arguments to $ARGV_OUT (and, with
    `probe`, lets `NAME -c ...` succeed: a script's `import` check)."""
    fake = bin_dir / name
    fake.write_text(
        "#!/bin/sh\n"
        + ('if [ "$1" = "-c" ]; then exit 0; fi\n' if probe else "")
        + f'exec {sys.executable} -c \'import json, os, sys; open(os.environ["ARGV_OUT"], "w")'
        '.write(json.dumps(sys.argv[1:]))\' "$@"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return fake


def _fake_vllm(bin_dir: Path) -> None:
    fake_program(bin_dir, "vllm")


def from_serve_sh(
    script: Path,
    bin_dir: Path,
    rank: int,
    nodes: int,
    program: str = "vllm",
    env: dict[str, str] | None = None,
) -> list[str]:
    """The arguments serve.sh passes to `program` on the node of `rank`, run by bash itself (with `env`
    added to its environment)."""
    out = script.parent / f".argv-{rank}.json"
    env = {
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "ARGV_OUT": str(out),
        "HOME": str(script.parent),
        **(env or {}),
    }
    if nodes > 1:
        env |= {"NODE_RANK": str(rank), "HEAD_ADDR": HEAD}
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"{script} did not run {program} (exit {proc.returncode}): {proc.stderr.strip()}")
    argv: list[str] = json.loads(out.read_text())
    out.unlink()
    return argv


_COMPOSE_VAR = re.compile(
    r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)"
)


def compose_interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation: $$, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, $VAR."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3)
        value = env.get(name)
        if op in (":-", "-") and (value is None or (op == ":-" and value == "")):
            return arg or ""
        if op in (":?", "?") and not value:
            raise RuntimeError(f"compose variable {name} is required: {arg}")
        return value or ""

    return _COMPOSE_VAR.sub(one, text)


def from_compose(path: Path) -> list[tuple[str, list[str]]]:
    """(service, argv) of every service; a `worker` profile runs as node rank 1, others as rank 0."""
    import yaml

    doc = yaml.safe_load(path.read_text())
    out = []
    for name, service in doc.get("services", {}).items():
        rank = 1 if "worker" in (service.get("profiles") or []) else 0
        env = {"HEAD_ADDR": HEAD, "NODE_RANK": str(rank)}
        entry = service.get("entrypoint") or ["vllm", "serve"]  # vllm/vllm-openai's ENTRYPOINT
        entry = [entry] if isinstance(entry, str) else entry
        argv = [compose_interpolate(str(a), env) for a in [*entry, *service.get("command", [])]]
        out.append((name, argv))
    return out


_K8S_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
# What LeaderWorkerSet sets in each pod (sigs.k8s.io/lws: LWS_LEADER_ADDRESS, LWS_GROUP_SIZE,
# LWS_WORKER_INDEX); a worker of index 1 stands for every worker.
_LWS_ENV = {"LWS_LEADER_ADDRESS": HEAD, "LWS_GROUP_SIZE": "2"}


def _containers(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if isinstance(node.get("containers"), list):
            found += [c for c in node["containers"] if isinstance(c, dict)]
        for key, value in node.items():
            if key != "containers":
                found += _containers(value)
    elif isinstance(node, list):
        for value in node:
            found += _containers(value)
    return found


def from_k8s(path: Path) -> list[list[str]]:
    """`command` + `args` of every container, with Kubernetes' `$(VAR)` expansion."""
    import yaml

    out = []
    for doc in yaml.safe_load_all(path.read_text()):
        for container in _containers(doc):
            env = dict(_LWS_ENV)
            is_worker = "worker" in str(container.get("name", ""))
            env["LWS_WORKER_INDEX"] = "1" if is_worker else "0"
            for var in container.get("env", []) or []:
                if "value" in var:
                    env[var["name"]] = str(var["value"])

            def expand(text: str, env: dict[str, str] = env) -> str:
                return _K8S_VAR.sub(
                    lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text
                )

            argv = [
                expand(str(a)) for a in [*(container.get("command") or []), *(container.get("args") or [])]
            ]
            out.append(argv)
    return out


def vllm_lines(bundle_dir: Path, files: list[str], nodes: int, bin_dir: Path) -> list[tuple[str, list[str]]]:
    """(where, argv after `vllm`) of every vLLM command line in a written bundle."""
    found: list[tuple[str, list[str]]] = []
    ranks = range(min(nodes, 2))  # the head and one worker (workers differ only in their rank)
    for name in files:
        path = bundle_dir / name
        if name == "serve.sh":
            found += [(f"{name} (node rank {r})", from_serve_sh(path, bin_dir, r, nodes)) for r in ranks]
        elif name in ("docker-compose.yaml", "compose.yaml"):
            found += [(f"{name} (service {svc})", a) for svc, a in from_compose(path)]
        elif name.endswith((".yaml", ".yml")):
            found += [(name, a) for a in from_k8s(path)]
    lines = []
    for where, argv in found:
        if argv[:2] == ["vllm", "serve"]:
            lines.append((where, argv[1:]))
        elif argv and argv[0] == "serve":  # serve.sh's `exec vllm serve ...`
            lines.append((where, argv))
        elif any("vllm serve" in a for a in argv):
            raise RuntimeError(
                f"{bundle_dir / where}: a shell runs `vllm serve`; this check reads argument lists"
            )
    return lines


# ---- what to plan


def plans(catalog: Any) -> list[tuple[str, dict[str, Any]]]:
    """(label, deploy options) for every catalog variant and quantization vLLM loads."""
    from vramplan.runtimes import Runtime

    single = [("h100-80gb", n) for n in (1, 2, 4, 8)] + [("h200", 8), ("b200", 8)]
    multi = [("h100-80gb", 8, 2), ("h200", 8, 2), ("b200", 8, 2), ("h200", 8, 4)]
    out = []
    for v in catalog.variants:
        for q in v.quants:
            if Runtime.VLLM not in q.runtimes:
                continue
            base = {"model": v.id, "quant": q.name}
            for target in ("vllm", "k8s"):
                out.append(
                    (f"{v.id} {q.name} {target} smallest node", base | {"target": target, "try": single})
                )
                out.append(
                    (f"{v.id} {q.name} {target} 8 x h200", base | {"target": target, "try": [("h200", 8)]})
                )
                out.append((f"{v.id} {q.name} {target} nodes", base | {"target": target, "try_multi": multi}))
            for kv in ("bf16", "fp16", "fp8"):
                out.append(
                    (f"{v.id} {q.name} vllm kv {kv}", base | {"target": "vllm", "try": single, "kv": kv})
                )
    return out


def hf_repos(home: Path) -> list[str]:
    """Two models read from a Hugging Face repo (a hub-cache snapshot and vramplan's cache of its
    safetensors headers, offline): a bf16 Qwen2 and a float16 Llama, shaped as the 1.5B and 8B distills."""
    from vramplan.arch import tensors
    from vramplan.catalog import load_catalog

    cat = load_catalog()
    out = []
    for repo, vid, dtype in (
        ("example-org/qwen2-1.5b-bf16", "deepseek-r1-distill-qwen-1.5b", "bfloat16"),
        ("example-org/llama-8b-fp16", "deepseek-r1-distill-llama-8b", "float16"),
    ):
        arch = cat.get(vid).architecture
        commit = "0" * 40
        snap = home / "hf" / "hub" / f"models--{repo.replace('/', '--')}"
        (snap / "refs").mkdir(parents=True, exist_ok=True)
        (snap / "refs" / "main").write_text(commit)
        (snap / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
        (snap / "snapshots" / commit / "config.json").write_text(json.dumps(config_json(arch, None, dtype)))
        st = "BF16" if dtype == "bfloat16" else "F16"
        doc = {
            "tensors": {
                _hf_name(t.name): {"dtype": st, "shape": list(reversed(t.shape))} for t in tensors(arch)
            }
        }
        meta = home / "vramplan" / "hf" / repo.replace("/", "--") / f"{commit}.json"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps(doc))
        out.append(repo)
    return out


_GGUF_TO_HF = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def _hf_name(gguf: str) -> str:
    """A dense model's GGUF tensor name as a Hugging Face checkpoint names it."""
    if gguf == "token_embd.weight":
        return "model.embed_tokens.weight"
    if gguf == "output_norm.weight":
        return "model.norm.weight"
    if gguf == "output.weight":
        return "lm_head.weight"
    _, layer, kind, suffix = gguf.split(".")
    return f"model.layers.{layer}.{_GGUF_TO_HF[kind]}.{suffix}"


def render(work: Path) -> dict[str, Any]:
    """Plan and write every bundle under `work`; the command lines and model folders to check."""
    os.environ["HF_HOME"] = str(work / "hf")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["VRAMPLAN_HOME"] = str(work / "vramplan")
    from vramplan.catalog import load_catalog
    from vramplan.deploy import prepare, write
    from vramplan.errors import VramplanError
    from vramplan.hardware import parse_gpu
    from vramplan.precision import KVDtype
    from vramplan.request import Choices

    catalog = load_catalog()
    bin_dir = work / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    _fake_vllm(bin_dir)
    todo = plans(catalog)
    for repo in hf_repos(work):
        for target in ("vllm", "k8s"):
            todo.append(
                (
                    f"{repo} {target} smallest node",
                    {"model": repo, "target": target, "try": [("h100-80gb", 1)]},
                )
            )
            todo.append(
                (f"{repo} {target} 8 x h200", {"model": repo, "target": target, "try": [("h200", 8)]})
            )
            todo.append(
                (
                    f"{repo} {target} nodes",
                    {"model": repo, "target": target, "try_multi": [("h100-80gb", 8, 2)]},
                )
            )
        for kv in ("bf16", "fp16", "fp8"):
            one = [("h100-80gb", 1)]
            todo.append((f"{repo} vllm kv {kv}", {"model": repo, "target": "vllm", "try": one, "kv": kv}))
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
                kv_cache_dtype=KVDtype(opt.get("kv", "auto")),
            )
            try:
                bundle = prepare(catalog, choices, None, opt["target"], out=work / "bundles" / str(n))
                break
            except VramplanError as exc:
                last = str(exc)
        if bundle is None:
            refused.append((label, last))
            continue
        write(bundle, force=True)
        plan = bundle.plan
        from vramplan.request import resolve_model

        resolved = resolve_model(catalog, Choices(model=opt["model"], quant=opt.get("quant")))
        quant = resolved.variant.plan_quant(plan.quant) if resolved.quant is None else resolved.quant
        storage = _storage(quant)
        dtype = "float16" if quant.scheme.base_dtype == "fp16" else "bfloat16"
        key = f"{plan.repo}"
        models[key] = {"config": config_json(resolved.variant.architecture, storage, dtype)}
        for where, argv in vllm_lines(bundle.out, [f.name for f in bundle.files], plan.nodes, bin_dir):
            if len(argv) < 2 or argv[1] != plan.repo:
                raise RuntimeError(
                    f"{bundle.out / where}: expected `vllm serve {plan.repo} ...`, got {argv[:2]}"
                )
            entry = lines.setdefault(json.dumps(argv), {"argv": argv, "model": key, "from": []})
            entry["from"].append(f"{label}: {where}")
    return {"lines": list(lines.values()), "models": models, "refused": refused, "plans": len(todo)}


# --------------------------------------------------------------------------- second half: vLLM


def _tokenizer(folder: Path) -> None:
    """A small tokenizer with the tokens R1's reasoning parser looks up (<think>, </think>): vLLM
    builds the parser, and so loads a tokenizer, while it makes the engine config."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", "a", "b"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_tokens([AddedToken("<think>", special=False), AddedToken("</think>", special=False)])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "model_max_length": 1 << 20,
            }
        )
    )


def _unquantized(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "quantization_config"}


def _without_quantization(argv: list[str], folder: str) -> list[str]:
    out = [*argv[:1], folder, *argv[2:]]
    if "--quantization" in out:
        i = out.index("--quantization")
        del out[i : i + 2]
    return out


class _Group:
    """A stand-in for one rank's view of a vLLM process group: its size and rank, nothing sent."""

    def __init__(self, size: int) -> None:
        self.world_size = size
        self.rank_in_group = self.rank = self.local_rank = 0
        self.ranks = list(range(size))
        self.is_first_rank, self.is_last_rank = True, size == 1
        self.unique_name = "vllm-check"
        self.device_group = self.cpu_group = self

    def size(self) -> int:
        return self.world_size


def _build_layers(config: Any) -> None:
    """The model's layers as TP rank 0 (and pipeline stage 0) builds them, on the meta device (no
    memory, no weights): vLLM's own Column/RowParallelLinear, QKVParallelLinear, VocabParallelEmbedding
    and FusedMoE run their `divide()` asserts on the plan's sizes. Quantization is left out (its
    kernels need a GPU); the process groups are stand-ins that only know their sizes."""
    import torch
    import vllm.distributed.parallel_state as ps
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.model_loader.utils import get_model_architecture

    par = config.parallel_config
    tp, pp, ep = par.tensor_parallel_size, par.pipeline_parallel_size, par.enable_expert_parallel
    ps._TP, ps._PP, ps._WORLD = _Group(tp), _Group(pp), _Group(tp * pp)
    ps._DP, ps._PCP, ps._DCP, ps._EPLB = _Group(1), _Group(1), _Group(1), _Group(1)
    ps._EP, ps._ETP = _Group(tp if ep else 1), _Group(1 if ep else tp)
    with set_current_vllm_config(config), torch.device("meta"):
        model_class, _ = get_model_architecture(config.model_config)
        model_class(vllm_config=config)


def check(work_file: Path) -> int:
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    work = json.loads(work_file.read_text())
    root = work_file.parent / "models"
    folders, plain = {}, {}
    for i, (repo, m) in enumerate(sorted(work["models"].items())):
        for kind, cfg in (("", m["config"]), ("-plain", _unquantized(m["config"]))):
            folder = root / f"{i}{kind}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "config.json").write_text(json.dumps(cfg, indent=1))
            _tokenizer(folder)
            (plain if kind else folders)[repo] = str(folder)

    t0 = time.monotonic()
    import vllm
    import vllm.entrypoints.cli.serve as serve
    from vllm.engine.arg_utils import EngineArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="vllm")
    sub = parser.add_subparsers(required=False, dest="subparser")
    (cmd,) = [c for c in serve.cmd_init() if c.name == "serve"]
    cmd.subparser_init(sub)
    print(f"vLLM {vllm.__version__}: imported in {time.monotonic() - t0:.1f} s", flush=True)

    def engine_config(argv: list[str]) -> Any:
        args = parser.parse_args(argv)
        cmd.validate(args)
        args.model = args.model_tag
        engine = EngineArgs.from_cli_args(args)
        engine.load_format = "dummy"
        return engine.create_engine_config()

    failures = 0
    built: dict[tuple[str, int, int, bool], str] = {}
    for n, line in enumerate(work["lines"], 1):
        argv = list(line["argv"])
        shown = "vllm " + " ".join(argv)
        argv[1] = folders[line["model"]]
        t1 = time.monotonic()
        stage = "vLLM"
        try:
            config = engine_config(argv)
            par = config.parallel_config
            got = f"tp {par.tensor_parallel_size} pp {par.pipeline_parallel_size} dp {par.data_parallel_size}"
            key = (
                plain[line["model"]],
                par.tensor_parallel_size,
                par.pipeline_parallel_size,
                par.enable_expert_parallel,
            )
            if key not in built:
                stage = f"vLLM, building the layers of TP rank 0 of {par.tensor_parallel_size}"
                _build_layers(engine_config(_without_quantization(argv, key[0])))
                built[key] = got
            print(f"ok   {n:3d} {time.monotonic() - t1:5.1f} s  {got}  {shown}", flush=True)
        except SystemExit as exc:  # argparse: the message went to stderr
            failures += 1
            print(
                f"FAIL {n:3d}  {shown}\n     from: {line['from'][0]}\n     vLLM's parser exited {exc.code}",
                flush=True,
            )
        except Exception as exc:
            failures += 1
            last = "".join(traceback.format_exception_only(exc)).strip()
            # pydantic wraps vLLM's ValueError: keep its own line
            said = [ln.strip() for ln in last.splitlines() if ln.strip().startswith("Value error, ")]
            if said:
                last = re.sub(r"\s*\[type=.*$", "", said[0]).removeprefix("Value error, ")
            print(f"FAIL {n:3d}  {shown}\n     from: {line['from'][0]}\n     {stage}: {last}", flush=True)
    total = len(work["lines"])
    print(f"{total - failures} passed, {failures} failed", flush=True)
    return 1 if failures else 0


# --------------------------------------------------------------------------- entry


def two_halves(
    runtime: str,
    script: str,
    doc: str,
    render: Callable[[Path], dict[str, Any]],
    check: Callable[[Path], int],
) -> int:
    """The command line of a check in two halves: `--check WORK.json` runs `check` (in the runtime's
    venv); else `render` writes the work file here and `--RUNTIME-python` runs `script` on it."""
    flag = f"--{runtime.lower()}-python"
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument(flag, help=f"the python of a venv with {runtime} (first half)")
    ap.add_argument("--check", type=Path, help="the work file the first half wrote (second half)")
    ap.add_argument("--keep", type=Path, help="write bundles and models here and keep them")
    ns = ap.parse_args()
    if ns.check is not None:
        return check(ns.check)
    python = getattr(ns, flag[2:].replace("-", "_"))
    if not python:
        ap.error(f"give {flag} (or --check WORK.json in {runtime}'s venv)")
    work = ns.keep or Path(tempfile.mkdtemp(prefix=f"{runtime.lower()}-check-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.monotonic()
        found = render(work)
        print(
            f"{found['plans']} plans: {len(found['lines'])} distinct {runtime} command lines, "
            f"{len(found['models'])} checkpoints ({time.monotonic() - t0:.1f} s)",
            flush=True,
        )
        for label, why in found["refused"]:
            print(f"refused by vramplan: {label}: {why}", flush=True)
        work_file = work / "work.json"
        work_file.write_text(json.dumps(found, indent=1))
        return subprocess.run([python, script, "--check", str(work_file)], check=False).returncode
    finally:
        if ns.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    return two_halves("vLLM", __file__, __doc__ or "", render, check)


if __name__ == "__main__":
    sys.exit(main())
