"""A Hugging Face repo -> the `Variant` and `Quant` the estimator takes, from `config.json` and the
safetensors headers only (no weights are downloaded).

Where each part comes from, first found wins:

- `config.json`: `huggingface_hub.hf_hub_download`, which keeps it in the hub cache
  (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`); with `HF_HUB_OFFLINE=1`
  only the cache is read (`local_files_only`).
- the tensor list (name, dtype, shape, bytes of every tensor):
  1. vramplan's own cache, `$VRAMPLAN_HOME/hf/<owner>--<name>/<commit>.json` (default
     `~/.cache/vramplan`), keyed by the commit the config came from;
  2. the checkpoint's `.safetensors` files in that snapshot of the hub cache, when all of them are
     there (their headers are read locally: 8 bytes of length, then JSON);
  3. online only: `huggingface_hub.get_safetensors_metadata`, which reads each file's header with
     HTTP range requests; the result is written to (1), so the next run works offline.
  `get_safetensors_metadata` itself always asks the Hub (it calls `file_exists`), so offline it
  cannot answer from the hub cache: that is why (1) exists.
- `HF_TOKEN` is passed to every call (gated and private repos).

Errors are one line each: a gated repo (accept the licence, set HF_TOKEN), a missing repo, a repo
without config.json or safetensors weights, offline with nothing cached, the Hub unreachable.

Architectures: LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, DeepseekV3ForCausalLM and
DeepseekV2ForCausalLM. Any other is an error naming these: a generic "GQA decoder" guess would get
sliding windows, hybrid layers or shared KV wrong without saying so.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vramplan.arch import Architecture, Tensor, file_tensor, out_of_bounds
from vramplan.cache import vramplan_home
from vramplan.catalog import PublishedSize, Quant, Variant
from vramplan.errors import SourceError
from vramplan.precision import WeightFormat
from vramplan.quantmix import Scheme
from vramplan.runtimes import Runtime

# config.json "architectures"[0] -> model_type (Architecture.model_type, as the catalog spells it)
SUPPORTED = {
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "DeepseekV3ForCausalLM": "deepseek_v3",
    "DeepseekV2ForCausalLM": "deepseek_v2",
}

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")

# Bytes per element of each safetensors dtype (safetensors `Dtype`, safetensors/src/tensor.rs);
# only used for headers that lack data_offsets. F4 packs two elements per byte.
_DTYPE_BYTES = {
    "F64": 8,
    "I64": 8,
    "U64": 8,
    "F32": 4,
    "I32": 4,
    "U32": 4,
    "F16": 2,
    "BF16": 2,
    "I16": 2,
    "U16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
}


@dataclass(frozen=True)
class HFTensor:
    name: str
    dtype: str  # safetensors dtype: BF16, F8_E4M3, I32, ...
    shape: tuple[int, ...]  # as stored (PyTorch order: out, in)
    nbytes: int


def looks_like_repo_id(name: str) -> bool:
    return bool(REPO_ID.match(name.strip()))


# --------------------------------------------------------------------------- where things are kept


def _offline_set() -> bool:
    # read at call time: huggingface_hub reads HF_HUB_OFFLINE once, when it is imported
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


# How long the reachability probe may wait for a TCP connection to the Hub (or the proxy) before the
# look-up goes on from the cache alone: huggingface_hub itself retries five times with back-off
# (about 24 s without a network, eleven lines of retry noise), so vramplan asks first.
HUB_CONNECT_TIMEOUT_S = 1.5
_reachability: dict[tuple[str, int], str | None] = {}


def _hub_address() -> tuple[str, int]:
    """The host and port a request to the Hub connects to first: the HTTPS proxy when one is set for
    the Hub's host, else the Hub (HF_ENDPOINT, default https://huggingface.co)."""
    from urllib.parse import urlsplit
    from urllib.request import getproxies, proxy_bypass

    hub = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = hub.hostname or "huggingface.co"
    proxy = getproxies().get(hub.scheme or "https")
    if proxy and not proxy_bypass(host):
        p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if p.hostname:
            return p.hostname, p.port or (443 if p.scheme == "https" else 80)
    return host, hub.port or (443 if hub.scheme == "https" else 80)


def hub_unreachable() -> str | None:
    """Why the Hub cannot be reached now (one short phrase), or None when a TCP connection opens within
    HUB_CONNECT_TIMEOUT_S. Asked once per process and address."""
    import socket

    addr = _hub_address()
    if addr not in _reachability:
        try:
            socket.create_connection(addr, timeout=HUB_CONNECT_TIMEOUT_S).close()
            _reachability[addr] = None
        except OSError as exc:
            why = exc.strerror or (str(exc) if str(exc) else type(exc).__name__)
            _reachability[addr] = f"{addr[0]}:{addr[1]}: {why}"
    return _reachability[addr]


def _offline() -> bool:
    """Answer from the cache alone: HF_HUB_OFFLINE is set, or the Hub cannot be reached."""
    return _offline_set() or hub_unreachable() is not None


def _quiet_hub() -> Any:
    """A context in which huggingface_hub's own warnings (its retry lines) stay off the terminal."""
    import contextlib
    import logging

    @contextlib.contextmanager
    def quiet() -> Any:
        log = logging.getLogger("huggingface_hub")
        level = log.level
        log.setLevel(logging.ERROR)
        try:
            yield
        finally:
            log.setLevel(level)

    return quiet()


def hub_cache_dir() -> Path:
    """huggingface_hub's cache folder (constants.py: HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME/hub)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expanduser(os.path.expandvars(os.environ[var])))
    home = os.environ.get("HF_HOME")
    if not home:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        home = os.path.join(xdg, "huggingface")
    return Path(os.path.expanduser(os.path.expandvars(home))) / "hub"


def _metadata_cache(repo: str, commit: str) -> Path:
    return vramplan_home() / "hf" / repo.replace("/", "--") / f"{commit}.json"


# --------------------------------------------------------------------------- talking to the Hub


def _hub_error(repo: str, exc: Exception, what: str) -> SourceError:
    """One line for each way huggingface_hub can fail."""
    from huggingface_hub import errors as e

    if isinstance(exc, e.GatedRepoError):
        return SourceError(
            f"{repo} is a gated repo: accept its licence at https://huggingface.co/{repo} and set HF_TOKEN "
            "to an access token of that account"
        )
    if isinstance(exc, e.RepositoryNotFoundError):
        hint = "" if os.environ.get("HF_TOKEN") else " (if it is private, set HF_TOKEN)"
        return SourceError(f"no Hugging Face repo {repo}{hint}")
    if isinstance(exc, e.RevisionNotFoundError):
        return SourceError(f"{repo} has no such revision")
    if isinstance(exc, (e.OfflineModeIsEnabled, e.LocalEntryNotFoundError)):
        if _offline_set():
            return SourceError(
                f"{repo}: {what} is not in the Hugging Face cache ({hub_cache_dir()}) and HF_HUB_OFFLINE is "
                "set; run once online to cache it"
            )
        why = hub_unreachable()
        if why is not None:
            return SourceError(
                f"{repo}: cannot reach the Hugging Face Hub ({why}) and {what} is not in its cache "
                f"({hub_cache_dir()})"
            )
        return SourceError(f"{repo}: cannot reach the Hugging Face Hub and {what} is not cached")
    if isinstance(exc, e.EntryNotFoundError):
        return SourceError(f"{repo} has no {what}")
    if isinstance(exc, e.NotASafetensorsRepoError):
        return SourceError(f"{repo} has no safetensors weights, so vramplan cannot read its tensor sizes")
    if isinstance(exc, e.HfHubHTTPError):
        return SourceError(
            f"{repo}: the Hugging Face Hub answered an error for {what}: {str(exc).splitlines()[0]}"
        )
    return SourceError(
        f"{repo}: cannot read {what} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    )


def _config_path(repo: str, revision: str | None) -> Path:
    import huggingface_hub

    try:
        with _quiet_hub():
            path = huggingface_hub.hf_hub_download(
                repo,
                "config.json",
                revision=revision,
                cache_dir=str(hub_cache_dir()),
                local_files_only=_offline(),
                token=os.environ.get("HF_TOKEN") or None,
            )
    except Exception as exc:
        raise _hub_error(repo, exc, "config.json") from None
    return Path(path)


def _fetch_metadata(repo: str, commit: str) -> list[HFTensor]:
    import huggingface_hub

    try:
        with _quiet_hub():
            meta = huggingface_hub.get_safetensors_metadata(
                repo, revision=commit, token=os.environ.get("HF_TOKEN") or None
            )
    except Exception as exc:
        raise _hub_error(repo, exc, "the safetensors headers") from None
    out = []
    for fm in meta.files_metadata.values():
        for name, info in fm.tensors.items():
            start, end = info.data_offsets
            out.append(HFTensor(name, info.dtype, tuple(info.shape), end - start))
    return out


# --------------------------------------------------------------------------- safetensors headers


def read_safetensors_header(path: Path) -> list[HFTensor]:
    """The tensors of one .safetensors file: a little-endian u64 N, then N bytes of JSON."""
    try:
        with path.open("rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise SourceError(f"{path}: truncated safetensors file")
            (n,) = struct.unpack("<Q", raw)
            if (
                n > 100_000_000
            ):  # safetensors caps headers at 100 MB (safetensors/src/tensor.rs MAX_HEADER_SIZE)
                raise SourceError(f"{path}: not a safetensors file (header length {n})")
            text = f.read(n)
            if len(text) != n:
                raise SourceError(f"{path}: truncated safetensors header")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        doc = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SourceError(f"{path}: not a safetensors file (the header is not JSON)") from None
    return _tensors_from_json(doc, path)


def _tensors_from_json(doc: Any, where: object) -> list[HFTensor]:
    if not isinstance(doc, dict):
        raise SourceError(f"{where}: malformed safetensors header")
    out = []
    for name, info in doc.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape = str(info["dtype"]), tuple(int(d) for d in info["shape"])
            if "data_offsets" in info:
                start, end = info["data_offsets"]
                nbytes = int(end) - int(start)
            else:
                n = 1
                for d in shape:
                    n *= d
                nbytes = (n + 1) // 2 if dtype == "F4" else n * _DTYPE_BYTES[dtype]
        except (KeyError, TypeError, ValueError):
            raise SourceError(f"{where}: malformed entry for tensor {name!r}") from None
        out.append(HFTensor(name, dtype, shape, nbytes))
    return out


def _local_safetensors(snapshot: Path) -> list[Path]:
    """The checkpoint's safetensors files in a snapshot, only when all of them are there: the shards
    `model.safetensors.index.json` names, else `model.safetensors` (transformers' file names)."""
    index = snapshot / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = sorted({snapshot / str(f) for f in weight_map.values()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return []
        return files if files and all(f.is_file() for f in files) else []
    single = snapshot / "model.safetensors"
    return [single] if single.is_file() else []


def _tensor_list(repo: str, snapshot: Path) -> list[HFTensor]:
    commit = snapshot.name
    cached = _metadata_cache(repo, commit)
    if cached.is_file():
        try:
            doc = json.loads(cached.read_text(encoding="utf-8"))
            return _tensors_from_json(doc["tensors"], cached)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is fetched again
    local = _local_safetensors(snapshot)
    if local:
        return [t for f in local for t in read_safetensors_header(f)]
    if _offline_set():
        raise SourceError(
            f"{repo}: its safetensors headers are not cached ({cached.parent}) and HF_HUB_OFFLINE is set; "
            "run once online to cache them"
        )
    why = hub_unreachable()
    if why is not None:
        raise SourceError(
            f"{repo}: cannot reach the Hugging Face Hub ({why}) and its safetensors headers are not "
            f"cached ({cached.parent})"
        )
    tensors = _fetch_metadata(repo, commit)
    doc = {
        "repo": repo,
        "revision": commit,
        "tensors": {
            t.name: {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [0, t.nbytes]} for t in tensors
        },
    }
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        tmp.replace(cached)
    except OSError:
        pass  # caching is best effort
    return tensors


# --------------------------------------------------------------------------- config.json -> Architecture


def _int(cfg: dict[str, Any], key: str, repo: str, default: int | None = None) -> int:
    value = cfg.get(key, default)
    if value is None:
        raise SourceError(f"{repo}: config.json has no {key}")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SourceError(f"{repo}: config.json {key} must be a non-negative integer, got {value!r}")
    return value


def architecture(cfg: dict[str, Any], repo: str) -> Architecture:
    archs = cfg.get("architectures") or []
    name = archs[0] if isinstance(archs, list) and archs else cfg.get("model_type", "?")
    if name not in SUPPORTED:
        raise SourceError(
            f"{repo}: architecture {name!r} is not supported; vramplan reads {', '.join(SUPPORTED)}"
        )
    model_type = SUPPORTED[name]
    heads = _int(cfg, "num_attention_heads", repo)
    fields: dict[str, Any] = {
        "model_type": model_type,
        "hidden_size": _int(cfg, "hidden_size", repo),
        "intermediate_size": _int(cfg, "intermediate_size", repo),
        "num_hidden_layers": _int(cfg, "num_hidden_layers", repo),
        "num_attention_heads": heads,
        "num_key_value_heads": _int(cfg, "num_key_value_heads", repo, heads),
        "vocab_size": _int(cfg, "vocab_size", repo),
        "max_position_embeddings": _int(cfg, "max_position_embeddings", repo),
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", False)),
    }
    if heads == 0 or fields["num_key_value_heads"] == 0 or heads % fields["num_key_value_heads"]:
        raise SourceError(f"{repo}: config.json num_key_value_heads must divide num_attention_heads")
    if model_type.startswith("deepseek"):
        for key in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
            fields[key] = _int(cfg, key, repo)
        fields["q_lora_rank"] = cfg.get("q_lora_rank") or None
        if cfg.get("n_routed_experts"):
            fields["n_routed_experts"] = _int(cfg, "n_routed_experts", repo)
            fields["n_shared_experts"] = cfg.get("n_shared_experts") or None
            fields["num_experts_per_tok"] = _int(cfg, "num_experts_per_tok", repo)
            fields["moe_intermediate_size"] = _int(cfg, "moe_intermediate_size", repo)
            fields["first_k_dense_replace"] = _int(cfg, "first_k_dense_replace", repo, 0)
        fields["num_nextn_predict_layers"] = _int(cfg, "num_nextn_predict_layers", repo, 0)
    else:
        head_dim = cfg.get("head_dim")
        if head_dim is not None and head_dim != fields["hidden_size"] // heads:
            fields["head_dim"] = _int(cfg, "head_dim", repo)
        # Qwen2 always has q/k/v biases (transformers modeling_qwen2.py); the others say so in the config
        fields["attention_bias"] = model_type == "qwen2" or bool(cfg.get("attention_bias", False))
        fields["qk_norm"] = model_type == "qwen3"  # modeling_qwen3.py: q_norm / k_norm on every layer
    arch = Architecture(**fields)
    if (bad := out_of_bounds(arch)) is not None:
        raise SourceError(f"{repo}: config.json {bad}")
    return arch


# --------------------------------------------------------------------------- checkpoint -> quantization


@dataclass(frozen=True)
class _Format:
    name: str
    format: WeightFormat
    requires: str | None = None


def weight_format(cfg: dict[str, Any], repo: str) -> _Format:
    """The quantization a checkpoint declares in config.json `quantization_config` (none: its dtype)."""
    qc = cfg.get("quantization_config")
    if not qc:
        dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16")
        return (
            _Format("fp16", WeightFormat.FP16) if dtype == "float16" else _Format("bf16", WeightFormat.BF16)
        )
    method = str(qc.get("quant_method", "")).lower()
    if method == "fp8":  # DeepSeek-V3/R1 native: e4m3 with 128x128 block scales (README_WEIGHTS.md)
        return _Format("fp8", WeightFormat.FP8, "fp8")
    if method == "awq" and qc.get("bits", 4) == 4:
        return _Format("awq-int4", WeightFormat.AWQ_INT4)
    if method == "gptq" and qc.get("bits", 4) == 4:
        return _Format("gptq-int4", WeightFormat.GPTQ_INT4)
    if method == "compressed-tensors":
        weights = [g.get("weights") or {} for g in (qc.get("config_groups") or {}).values()]
        kinds = {(w.get("num_bits"), w.get("type")) for w in weights}
        if kinds == {(8, "float")}:
            return _Format("fp8", WeightFormat.FP8, "fp8")
        if kinds == {(4, "int")}:
            return _Format("gptq-int4", WeightFormat.GPTQ_INT4)
        if kinds == {(4, "float")}:
            return _Format("nvfp4", WeightFormat.NVFP4, "fp4")
    if method == "modelopt" and "FP4" in str(qc.get("quant_algo", "")).upper():
        return _Format("nvfp4", WeightFormat.NVFP4, "fp4")
    if method == "modelopt" and "FP8" in str(qc.get("quant_algo", "")).upper():
        return _Format("fp8", WeightFormat.FP8, "fp8")
    raise SourceError(
        f"{repo}: quantization {method or '?'!r} ({json.dumps(qc, sort_keys=True)[:80]}) is not supported; "
        "vramplan reads bf16/fp16, fp8, AWQ and GPTQ int4, compressed-tensors and ModelOpt NVFP4 checkpoints"
    )


# HF module names -> GGUF tensor names (llama.cpp gguf-py tensor_mapping.py), so that the estimator
# places them (layer, TP split) as it places the tensors of `arch.tensors()`.
_MODULES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "self_attn.q_a_proj": "attn_q_a",
    "self_attn.q_a_layernorm": "attn_q_a_norm",
    "self_attn.q_b_proj": "attn_q_b",
    "self_attn.kv_a_proj_with_mqa": "attn_kv_a_mqa",
    "self_attn.kv_a_layernorm": "attn_kv_a_norm",
    "self_attn.kv_b_proj": "attn_kv_b",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "mlp.gate": "ffn_gate_inp",
    "mlp.shared_experts.gate_proj": "ffn_gate_shexp",
    "mlp.shared_experts.up_proj": "ffn_up_shexp",
    "mlp.shared_experts.down_proj": "ffn_down_shexp",
}
_EXPERT = re.compile(r"^mlp\.experts\.\d+\.(gate|up|down)_proj$")
_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_TOP = {"model.embed_tokens": "token_embd", "lm_head": "output", "model.norm": "output_norm"}

# Side tensors a quantized module stores beside (or instead of) its weight
_SIDE = (
    "weight_scale_inv",  # DeepSeek fp8 block scales
    "weight_scale",  # compressed-tensors / ModelOpt scales
    "weight_scale_2",
    "weight_zero_point",
    "weight_global_scale",
    "input_scale",
    "input_global_scale",
    "weight_shape",
    "weight_packed",  # compressed-tensors pack-quantized int4
    "qweight",  # AWQ / GPTQ packed int4
    "qzeros",
    "scales",
    "g_idx",
)


def _gguf_name(module: str) -> tuple[str, int | None] | None:
    """(GGUF base name, layer) of an HF module, or None for a module vramplan does not know."""
    if module in _TOP:
        return _TOP[module], None
    m = _LAYER.match(module)
    if not m:
        return None
    layer, rest = int(m[1]), m[2]
    e = _EXPERT.match(rest)
    if e:
        return f"blk.{layer}.ffn_{e[1]}_exps", layer
    if rest in _MODULES:
        return f"blk.{layer}.{_MODULES[rest]}", layer
    return None


def _logical_shape(parts: dict[str, HFTensor], fmt: _Format, qc: dict[str, Any]) -> tuple[int, ...]:
    """The (in, out) shape in ggml order of a module's weight, unpacking packed int4 / fp4 storage."""
    w = parts.get("weight")
    if "qweight" in parts:  # AWQ: [in, out / 8] int32; GPTQ: [in / 8, out] int32
        per = 32 // int(qc.get("bits", 4))
        rows, cols = parts["qweight"].shape
        return (rows, cols * per) if fmt.format is WeightFormat.AWQ_INT4 else (rows * per, cols)
    if "weight_packed" in parts:  # compressed-tensors: [out, in / 8] int32
        rows, cols = parts["weight_packed"].shape
        return (cols * 32 // int(_ct_bits(qc)), rows)
    if w is None:
        biggest = max(parts.values(), key=lambda t: t.nbytes)
        return tuple(reversed(biggest.shape))
    if w.dtype == "U8" and fmt.format is WeightFormat.NVFP4 and len(w.shape) == 2:  # e2m1, two per byte
        return (w.shape[1] * 2, w.shape[0])
    return tuple(reversed(w.shape))


def _ct_bits(qc: dict[str, Any]) -> int:
    for g in (qc.get("config_groups") or {}).values():
        bits = (g.get("weights") or {}).get("num_bits")
        if bits:
            return int(bits)
    return 4


def tensor_table(
    tensors: list[HFTensor], arch: Architecture, fmt: _Format, cfg: dict[str, Any], repo: str
) -> tuple[tuple[Tensor, int], ...]:
    """One entry per weight (a module's weight with its side tensors, or a bias) with its exact bytes.

    Multi-token-prediction layers (DeepSeek-V3: `model.layers.61.*`) are left out, as vLLM and SGLang
    do not load them unless speculative decoding uses them.
    """
    qc = cfg.get("quantization_config") or {}
    groups: dict[str, dict[str, HFTensor]] = {}
    for t in tensors:
        m = _LAYER.match(t.name)
        if m and int(m[1]) >= arch.num_hidden_layers:
            continue  # MTP layers
        module, _, leaf = t.name.rpartition(".")
        if leaf in ("bias", "e_score_correction_bias"):
            groups.setdefault(t.name, {})["weight"] = t
        elif leaf == "weight" or leaf in _SIDE:
            groups.setdefault(module, {})[leaf] = t
        elif leaf != "inv_freq":  # rotary buffers some old checkpoints saved; not weights
            raise SourceError(f"{repo}: unexpected tensor {t.name!r} in the safetensors headers")
    table: list[tuple[Tensor, int]] = []
    unknown: list[str] = []
    for module, parts in groups.items():
        owner, _, leaf = module.rpartition(".")
        if leaf in ("bias", "e_score_correction_bias"):
            base = _gguf_name(owner)
            suffix = "bias"
            if base is not None and leaf == "e_score_correction_bias":
                base = (base[0].replace("ffn_gate_inp", "exp_probs_b"), base[1])
        else:
            base, suffix = _gguf_name(module), "weight"
        if base is None:
            unknown.append(module)
            continue
        shape = _logical_shape(parts, fmt, qc)
        table.append((file_tensor(f"{base[0]}.{suffix}", shape), sum(p.nbytes for p in parts.values())))
    if unknown:
        raise SourceError(
            f"{repo}: {len(unknown)} tensors vramplan cannot place, e.g. {unknown[0]!r}; "
            "the checkpoint does not look like its config.json architecture"
        )
    if not table:
        raise SourceError(f"{repo}: the safetensors headers list no weights")
    return tuple(table)


def load_hf(repo: str, revision: str | None = None) -> tuple[Variant, Quant]:
    """The variant and quantization of a Hugging Face repo, from config.json and safetensors headers."""
    repo = repo.strip()
    if not looks_like_repo_id(repo):
        raise SourceError(f"{repo!r} is not a Hugging Face repo id (OWNER/NAME)")
    path = _config_path(repo, revision)
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise SourceError(f"{repo}: config.json ({path}) is not valid JSON") from None
    if not isinstance(cfg, dict):
        raise SourceError(f"{repo}: config.json is not a JSON object")
    arch = architecture(cfg, repo)
    fmt = weight_format(cfg, repo)
    listed = _tensor_list(repo, path.parent)
    table = tensor_table(listed, arch, fmt, cfg, repo)
    total = sum(t.nbytes for t in listed)  # the download: MTP layers included
    source = f"safetensors headers of {repo}@{path.parent.name}"
    quant = Quant(
        name=fmt.name,
        format=fmt.format,
        runtimes=(Runtime.VLLM, Runtime.SGLANG),
        scheme=Scheme(fmt.format, None, "fp16" if fmt.format is WeightFormat.FP16 else "bf16"),
        repo=repo,
        requires=fmt.requires,
        size=PublishedSize(total, 0, source, f"{total} bytes"),
        notes=f"read from the {source}",
        tensor_table=table,
    )
    variant = Variant(
        id=repo,
        name=repo,
        hf_repo=repo,
        family="hf",
        architecture=arch,
        architecture_id=f"hf:{arch.model_type}",
        architecture_source=f"https://huggingface.co/{repo}/blob/{path.parent.name}/config.json",
        default_quant=fmt.name,
        quants=(quant,),
    )
    return variant, quant
