"""`vramplan estimate OWNER/NAME` for a repo the catalog does not know: config.json and the safetensors
headers, read through a hub cache laid out as huggingface_hub lays it out, offline (conftest sets
HF_HUB_OFFLINE=1 and a temporary HF_HOME / VRAMPLAN_HOME).

The tensor lists come from real `.safetensors` files in the snapshot (header plus zero-filled data,
written here) or from vramplan's own metadata cache; the online path is the hub client's
`get_safetensors_metadata`, replaced by a stand-in that answers as the real one does.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from vramplan.errors import SourceError
from vramplan.sources import hf

hub = pytest.importorskip("huggingface_hub")
from huggingface_hub import errors as hub_errors  # noqa: E402

COMMIT = "0123456789abcdef0123456789abcdef01234567"
DTYPE_BYTES = {"BF16": 2, "F16": 2, "F32": 4, "F8_E4M3": 1, "I32": 4, "I64": 8, "U8": 1}


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> int:
    """A real safetensors file (u64 header length, JSON header, zero data); returns the data bytes."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        n = DTYPE_BYTES[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.truncate(8 + len(raw) + offset)
    return offset


def hub_snapshot(repo: str, files: dict[str, bytes]) -> Path:
    """Put `files` in $HF_HOME/hub the way huggingface_hub does: blobs named by hash, snapshot
    entries as relative symlinks to them, refs/main holding the commit."""
    root = Path(os.environ["HF_HOME"]) / "hub" / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    snap = root / "snapshots" / COMMIT
    snap.mkdir(parents=True, exist_ok=True)
    (root / "blobs").mkdir(exist_ok=True)
    for name, data in files.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snap / name).symlink_to(os.path.relpath(blob, snap))
    return snap


def qwen2_config(**changes: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 512,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }
    cfg.update(changes)
    return cfg


def qwen2_tensors(cfg: dict[str, Any], dtype: str = "BF16") -> dict[str, tuple[str, list[int]]]:
    h, ff, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = h // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * hd
    t: dict[str, tuple[str, list[int]]] = {"model.embed_tokens.weight": (dtype, [v, h])}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t |= {
            p + "input_layernorm.weight": (dtype, [h]),
            p + "self_attn.q_proj.weight": (dtype, [h, h]),
            p + "self_attn.q_proj.bias": (dtype, [h]),
            p + "self_attn.k_proj.weight": (dtype, [kv, h]),
            p + "self_attn.k_proj.bias": (dtype, [kv]),
            p + "self_attn.v_proj.weight": (dtype, [kv, h]),
            p + "self_attn.v_proj.bias": (dtype, [kv]),
            p + "self_attn.o_proj.weight": (dtype, [h, h]),
            p + "post_attention_layernorm.weight": (dtype, [h]),
            p + "mlp.gate_proj.weight": (dtype, [ff, h]),
            p + "mlp.up_proj.weight": (dtype, [ff, h]),
            p + "mlp.down_proj.weight": (dtype, [h, ff]),
        }
    t["model.norm.weight"] = (dtype, [h])
    t["lm_head.weight"] = (dtype, [v, h])
    return t


def n_elements(tensors: dict[str, tuple[str, list[int]]]) -> int:
    total = 0
    for _, shape in tensors.values():
        n = 1
        for d in shape:
            n *= d
        total += n
    return total


@dataclass
class Repo:
    repo: str
    snapshot: Path
    weights_bytes: int
    params: int


@pytest.fixture
def qwen_repo(tmp_path: Path) -> Repo:
    """A small Qwen2 repo with its weights in two safetensors shards in the snapshot."""
    cfg = qwen2_config()
    tensors = qwen2_tensors(cfg)
    names = list(tensors)
    half = len(names) // 2
    shards = tmp_path / "shards"
    shards.mkdir()
    a = write_safetensors(shards / "a", {k: tensors[k] for k in names[:half]})
    b = write_safetensors(shards / "b", {k: tensors[k] for k in names[half:]})
    index = {"metadata": {"total_size": a + b}, "weight_map": {}}
    for i, k in enumerate(names):
        index["weight_map"][k] = f"model-0000{1 if i < half else 2}-of-00002.safetensors"
    snap = hub_snapshot(
        "acme/tiny-qwen",
        {
            "config.json": json.dumps(cfg).encode(),
            "model.safetensors.index.json": json.dumps(index).encode(),
            "model-00001-of-00002.safetensors": (shards / "a").read_bytes(),
            "model-00002-of-00002.safetensors": (shards / "b").read_bytes(),
        },
    )
    return Repo("acme/tiny-qwen", snap, a + b, n_elements(tensors))


def estimate_json(run: Callable[..., Result], *args: str) -> dict[str, Any]:
    r = run("estimate", *args, "--json")
    assert r.exit_code == 0, r.output
    doc: dict[str, Any] = json.loads(r.output)
    return doc


def test_repo_from_the_hub_cache(qwen_repo: Repo, run: Callable[..., Result]) -> None:
    doc = estimate_json(run, qwen_repo.repo, "--gpu", "l4")
    assert doc["model"] == "acme/tiny-qwen"
    assert (doc["quant"], doc["runtime"], doc["kv_cache_dtype"]) == ("bf16", "vllm", "bf16")
    assert doc["weights_bytes"] == qwen_repo.weights_bytes
    assert doc["params"] == qwen_repo.params
    # K and V, 2 KV heads of 32, bf16, 2 layers
    assert doc["kv_bytes_per_token"] == 2 * 2 * 32 * 2 * 2


def test_partly_downloaded_shards_are_not_used(qwen_repo: Repo, run: Callable[..., Result]) -> None:
    """With a shard missing from the snapshot, the local files would undercount: not used."""
    (qwen_repo.snapshot / "model-00002-of-00002.safetensors").unlink()
    r = run("estimate", qwen_repo.repo)
    assert r.exit_code == 2
    assert "its safetensors headers are not cached" in r.output


def test_tensor_parallel_splits_the_file_tensors(qwen_repo: Repo, run: Callable[..., Result]) -> None:
    doc = estimate_json(run, qwen_repo.repo, "--gpu", "l4:2")
    assert doc["topology"]["tensor_parallel"] == 2
    per_gpu = [g["weights_bytes"] for g in doc["per_gpu"]]
    # norms are replicated, everything else halves (K/V: one of the two heads each)
    assert per_gpu[0] == per_gpu[1] and qwen_repo.weights_bytes // 2 < per_gpu[0] < qwen_repo.weights_bytes


def test_catalog_first(run: Callable[..., Result]) -> None:
    """A repo the catalog knows never reaches the hub (the cache here is empty and offline)."""
    doc = estimate_json(run, "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "--gpu", "l4")
    assert doc["model"] == "deepseek-r1-distill-qwen-7b"


def test_metadata_cache_is_used_offline(tmp_path: Path, run: Callable[..., Result]) -> None:
    """No safetensors in the snapshot: vramplan's own cache of the headers answers."""
    cfg = qwen2_config(torch_dtype="float16", tie_word_embeddings=True)
    tensors = qwen2_tensors(cfg, "F16")
    del tensors["lm_head.weight"]
    hub_snapshot("acme/cached", {"config.json": json.dumps(cfg).encode()})
    cache = Path(os.environ["VRAMPLAN_HOME"]) / "hf" / "acme--cached" / f"{COMMIT}.json"
    cache.parent.mkdir(parents=True)
    doc = {"tensors": {k: {"dtype": d, "shape": s} for k, (d, s) in tensors.items()}}
    cache.write_text(json.dumps(doc))
    out = estimate_json(run, "acme/cached", "--gpu", "l4")
    assert (out["quant"], out["kv_cache_dtype"]) == ("fp16", "fp16")
    assert out["weights_bytes"] == 2 * n_elements(tensors)


def test_online_fetch_is_cached_for_offline_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run: Callable[..., Result]
) -> None:
    """Online, the headers come from get_safetensors_metadata and are cached; then offline works."""
    from huggingface_hub.utils import SafetensorsFileMetadata, SafetensorsRepoMetadata, TensorInfo

    cfg = qwen2_config()
    tensors = qwen2_tensors(cfg)
    snap = hub_snapshot("acme/online", {"config.json": json.dumps(cfg).encode()})
    infos, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        n = 2 * (shape[0] * (shape[1] if len(shape) > 1 else 1))
        infos[name] = TensorInfo(dtype=dtype, shape=shape, data_offsets=(offset, offset + n))
        offset += n
    calls: list[tuple[str, str | None]] = []

    def fake_metadata(repo_id: str, revision: str | None = None, token: str | None = None, **_: Any) -> Any:
        assert token == "hf_secret"
        calls.append((repo_id, revision))
        fm = SafetensorsFileMetadata(metadata={}, tensors=infos)
        return SafetensorsRepoMetadata(
            metadata=None,
            sharded=False,
            weight_map=dict.fromkeys(infos, "model.safetensors"),
            files_metadata={"model.safetensors": fm},
        )

    def fake_download(repo_id: str, filename: str, **kw: Any) -> str:
        assert kw["token"] == "hf_secret" and not kw["local_files_only"]
        return str(snap / filename)

    real_download = hub.hf_hub_download
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hf, "hub_unreachable", lambda: None)  # as if the Hub answered
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setattr(hub, "get_safetensors_metadata", fake_metadata)
    monkeypatch.setattr(hub, "hf_hub_download", fake_download)
    assert estimate_json(run, "acme/online", "--gpu", "l4")["weights_bytes"] == offset
    assert calls == [("acme/online", COMMIT)]
    assert (Path(os.environ["VRAMPLAN_HOME"]) / "hf" / "acme--online" / f"{COMMIT}.json").is_file()
    # offline again, with the real hub client: the cached headers answer
    monkeypatch.setattr(hub, "hf_hub_download", real_download)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert estimate_json(run, "acme/online", "--gpu", "l4")["weights_bytes"] == offset
    assert len(calls) == 1


def test_deepseek_fp8_checkpoint(tmp_path: Path, run: Callable[..., Result]) -> None:
    """A tiny DeepSeek-V3-shaped FP8 checkpoint: weights with block scales, experts, an MTP layer."""
    h, heads, kvr, rope, nope, vd, ne, ff, eff = 128, 4, 64, 32, 32, 32, 4, 192, 32
    cfg = {
        "architectures": ["DeepseekV3ForCausalLM"],
        "model_type": "deepseek_v3",
        "hidden_size": h,
        "intermediate_size": ff,
        "num_hidden_layers": 2,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "vocab_size": 512,
        "max_position_embeddings": 8192,
        "q_lora_rank": 64,
        "kv_lora_rank": kvr,
        "qk_nope_head_dim": nope,
        "qk_rope_head_dim": rope,
        "v_head_dim": vd,
        "n_routed_experts": ne,
        "n_shared_experts": 1,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": eff,
        "first_k_dense_replace": 1,
        "num_nextn_predict_layers": 1,
        "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]},
    }
    t: dict[str, tuple[str, list[int]]] = {"model.embed_tokens.weight": ("BF16", [512, h])}

    def fp8(name: str, out: int, inp: int) -> None:
        t[name + ".weight"] = ("F8_E4M3", [out, inp])
        t[name + ".weight_scale_inv"] = ("F32", [-(-out // 128), -(-inp // 128)])

    for i in range(3):  # layer 2 is the MTP module
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = ("BF16", [h])
        t[p + "self_attn.q_a_layernorm.weight"] = ("BF16", [64])
        t[p + "self_attn.kv_a_layernorm.weight"] = ("BF16", [kvr])
        fp8(p + "self_attn.q_a_proj", 64, h)
        fp8(p + "self_attn.q_b_proj", heads * (nope + rope), 64)
        fp8(p + "self_attn.kv_a_proj_with_mqa", kvr + rope, h)
        fp8(p + "self_attn.kv_b_proj", heads * (nope + vd), kvr)
        fp8(p + "self_attn.o_proj", h, heads * vd)
        t[p + "post_attention_layernorm.weight"] = ("BF16", [h])
        if i == 0:
            for m in ("gate", "up"):
                fp8(p + f"mlp.{m}_proj", ff, h)
            fp8(p + "mlp.down_proj", h, ff)
        else:
            t[p + "mlp.gate.weight"] = ("BF16", [ne, h])
            t[p + "mlp.gate.e_score_correction_bias"] = ("F32", [ne])
            for e in range(ne):
                for m in ("gate", "up"):
                    fp8(p + f"mlp.experts.{e}.{m}_proj", eff, h)
                fp8(p + f"mlp.experts.{e}.down_proj", h, eff)
            for m in ("gate", "up"):
                fp8(p + f"mlp.shared_experts.{m}_proj", eff, h)
            fp8(p + "mlp.shared_experts.down_proj", h, eff)
        if i == 2:
            t[p + "embed_tokens.weight"] = ("BF16", [512, h])
            t[p + "eh_proj.weight"] = ("BF16", [h, 2 * h])
    t["model.norm.weight"] = ("BF16", [h])
    t["lm_head.weight"] = ("BF16", [512, h])
    st = tmp_path / "w.safetensors"
    write_safetensors(st, t)
    hub_snapshot(
        "acme/tiny-v3", {"config.json": json.dumps(cfg).encode(), "model.safetensors": st.read_bytes()}
    )

    def nbytes(items: dict[str, tuple[str, list[int]]]) -> int:
        total = 0
        for dtype, shape in items.values():
            n = DTYPE_BYTES[dtype]
            for d in shape:
                n *= d
            total += n
        return total

    trunk = {k: v for k, v in t.items() if not k.startswith("model.layers.2.")}
    doc = estimate_json(run, "acme/tiny-v3", "--gpu", "h100")
    assert (doc["quant"], doc["runtime"]) == ("fp8", "vllm")
    assert doc["kv_bytes_per_token"] == (kvr + rope) * 2 * 2  # the MLA latent, bf16, 2 layers
    assert doc["weights_bytes"] == nbytes(trunk)  # the MTP layer is not loaded
    # on the GPU, vLLM adds its absorbed bf16 copies of kv_b (estimate.mla_absorbed_bytes), per layer
    absorbed = kvr * heads * (nope + vd) * 2 * 2
    assert doc["per_gpu"][0]["weights_bytes"] == nbytes(trunk) + absorbed
    # parameters: every weight and the router's correction bias, not the scales
    assert doc["params"] == n_elements({k: v for k, v in trunk.items() if not k.endswith("weight_scale_inv")})


def test_awq_checkpoint_unpacks_params(tmp_path: Path) -> None:
    cfg = qwen2_config(
        quantization_config={"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemm"}
    )
    dense = qwen2_tensors(cfg)
    t: dict[str, tuple[str, list[int]]] = {}
    for name, (_, shape) in dense.items():
        if len(shape) == 2 and ".layers." in name:  # AutoAWQ GEMM: qweight [in, out/8], qzeros, scales
            out, inp = shape
            base = name[: -len(".weight")]
            t[base + ".qweight"] = ("I32", [inp, out // 8])
            t[base + ".qzeros"] = ("I32", [inp // 128, out // 8])
            t[base + ".scales"] = ("F16", [inp // 128, out])
        else:
            t[name] = ("F16", shape)
    st = tmp_path / "w.safetensors"
    size = write_safetensors(st, t)
    hub_snapshot("acme/awq", {"config.json": json.dumps(cfg).encode(), "model.safetensors": st.read_bytes()})
    variant, quant = hf.load_hf("acme/awq")
    assert (quant.name, quant.format.value) == ("awq-int4", "awq-int4")
    assert sum(b for _, b in quant.tensor_table or ()) == size
    assert variant.params == n_elements(dense)


def _quantized_repo(
    repo: str, qc: dict[str, Any], pack: Callable[[str, int, int], dict[str, Any]]
) -> tuple[int, int]:
    """A Qwen2 repo whose layer matrices are stored as `pack(base, out, in)` returns; (bytes, params)."""
    cfg = qwen2_config(quantization_config=qc)
    dense = qwen2_tensors(cfg)
    t: dict[str, tuple[str, list[int]]] = {}
    for name, (dtype, shape) in dense.items():
        if len(shape) == 2 and ".layers." in name:
            t |= pack(name[: -len(".weight")], shape[0], shape[1])
        else:
            t[name] = (dtype, shape)
    st = Path(os.environ["HF_HOME"]).parent / f"{repo.replace('/', '-')}.safetensors"
    size = write_safetensors(st, t)
    hub_snapshot(repo, {"config.json": json.dumps(cfg).encode(), "model.safetensors": st.read_bytes()})
    return size, n_elements(dense)


@pytest.mark.parametrize(
    ("qc", "pack", "name"),
    [
        (  # compressed-tensors pack-quantized w4a16 (neuralmagic): weight_packed [out, in/8] int32
            {
                "quant_method": "compressed-tensors",
                "format": "pack-quantized",
                "config_groups": {"group_0": {"weights": {"num_bits": 4, "type": "int", "group_size": 128}}},
            },
            lambda b, o, i: {
                b + ".weight_packed": ("I32", [o, i // 8]),
                b + ".weight_scale": ("BF16", [o, i // 128]),
                b + ".weight_shape": ("I64", [2]),
            },
            "gptq-int4",
        ),
        (  # GPTQ (AutoGPTQ): qweight [in/8, out] int32, qzeros, scales, g_idx
            {"quant_method": "gptq", "bits": 4, "group_size": 128},
            lambda b, o, i: {
                b + ".qweight": ("I32", [i // 8, o]),
                b + ".qzeros": ("I32", [i // 128, o // 8]),
                b + ".scales": ("F16", [i // 128, o]),
                b + ".g_idx": ("I32", [i]),
            },
            "gptq-int4",
        ),
        (  # ModelOpt NVFP4: e2m1 weight two per byte, fp8 scale per 16, fp32 global scales
            {"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16},
            lambda b, o, i: {
                b + ".weight": ("U8", [o, i // 2]),
                b + ".weight_scale": ("F8_E4M3", [o, i // 16]),
                b + ".weight_scale_2": ("F32", []),
                b + ".input_scale": ("F32", []),
            },
            "nvfp4",
        ),
        (  # compressed-tensors FP8 dynamic (RedHatAI): e4m3 weight, a bf16 scale per output channel
            {
                "quant_method": "compressed-tensors",
                "config_groups": {"group_0": {"weights": {"num_bits": 8, "type": "float"}}},
            },
            lambda b, o, i: {b + ".weight": ("F8_E4M3", [o, i]), b + ".weight_scale": ("BF16", [o, 1])},
            "fp8",
        ),
    ],
)
def test_quantized_checkpoints(
    qc: dict[str, Any], pack: Callable[[str, int, int], dict[str, Any]], name: str, run: Callable[..., Result]
) -> None:
    size, params = _quantized_repo("acme/quantized", qc, pack)
    doc = estimate_json(run, "acme/quantized", "--gpu", "b200")
    assert (doc["quant"], doc["runtime"]) == (name, "vllm")
    assert doc["weights_bytes"] == size
    assert doc["params"] == params  # packed storage counts the unpacked weights


# --------------------------------------------------------------------------- errors: one line, exit 2


def _hub_exc(cls: type[Exception], msg: str) -> Exception:
    """An instance of the hub's own exception class (HTTP errors need a response object to be built
    normally; the message is all vramplan reads)."""
    exc = cls.__new__(cls)
    Exception.__init__(exc, msg)
    return exc


@pytest.fixture
def failing_download(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Exception], None]]:
    def install(exc: Exception) -> None:
        def fake(*a: Any, **kw: Any) -> str:
            raise exc

        monkeypatch.setattr(hub, "hf_hub_download", fake)

    yield install


def test_gated_repo(failing_download: Callable[[Exception], None], run: Callable[..., Result]) -> None:
    failing_download(_hub_exc(hub_errors.GatedRepoError, "403 Client Error: gated"))
    r = run("estimate", "acme/gated")
    assert r.exit_code == 2
    assert r.output.startswith(
        "Error: acme/gated is a gated repo: accept its licence at https://huggingface.co/acme/gated and set "
        "HF_TOKEN to an access token of that account; it is not in vramplan's catalog either ("
    )
    assert r.output.count("\n") == 1


def test_missing_repo(failing_download: Callable[[Exception], None], run: Callable[..., Result]) -> None:
    failing_download(_hub_exc(hub_errors.RepositoryNotFoundError, "404 Client Error"))
    r = run("estimate", "acme/nothing-here")
    assert r.exit_code == 2
    assert r.output.startswith(
        "Error: no Hugging Face repo acme/nothing-here (if it is private, set HF_TOKEN)"
    )
    assert r.output.count("\n") == 1


def test_missing_repo_suggests_catalog_names(
    failing_download: Callable[[Exception], None], run: Callable[..., Result]
) -> None:
    failing_download(_hub_exc(hub_errors.RepositoryNotFoundError, "404 Client Error"))
    r = run("estimate", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7")
    assert "did you mean deepseek-ai/deepseek-r1-distill-qwen-7b" in r.output


def test_offline_with_nothing_cached(run: Callable[..., Result]) -> None:
    """The real hub client, offline, an empty cache: LocalEntryNotFoundError, said in one line."""
    r = run("estimate", "acme/not-cached")
    hub_dir = Path(os.environ["HF_HOME"]) / "hub"
    assert r.exit_code == 2
    assert r.output.startswith(
        f"Error: acme/not-cached: config.json is not in the Hugging Face cache ({hub_dir}) and HF_HUB_OFFLINE "
        "is set; run once online to cache it;"
    )
    assert r.output.count("\n") == 1


def test_offline_without_headers(run: Callable[..., Result]) -> None:
    hub_snapshot("acme/config-only", {"config.json": json.dumps(qwen2_config()).encode()})
    r = run("estimate", "acme/config-only")
    cache = Path(os.environ["VRAMPLAN_HOME"]) / "hf" / "acme--config-only"
    assert r.output.startswith(
        f"Error: acme/config-only: its safetensors headers are not cached ({cache}) and HF_HUB_OFFLINE is set"
    )


def test_offline_mode_error_online(
    failing_download: Callable[[Exception], None], monkeypatch: pytest.MonkeyPatch, run: Callable[..., Result]
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hf, "hub_unreachable", lambda: None)  # the probe connected, the download failed
    failing_download(_hub_exc(hub_errors.LocalEntryNotFoundError, "connection error"))
    r = run("estimate", "acme/unreachable")
    assert r.output.startswith(
        "Error: acme/unreachable: cannot reach the Hugging Face Hub and config.json is not cached"
    )


def test_unsupported_architecture(run: Callable[..., Result]) -> None:
    cfg = qwen2_config(architectures=["MistralForCausalLM"], model_type="mistral")
    hub_snapshot("acme/mistral", {"config.json": json.dumps(cfg).encode()})
    r = run("estimate", "acme/mistral")
    assert r.exit_code == 2
    assert r.output.startswith(
        "Error: acme/mistral: architecture 'MistralForCausalLM' is not supported; vramplan reads "
        "LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, DeepseekV3ForCausalLM, DeepseekV2ForCausalLM"
    )


def test_unsupported_quantization() -> None:
    with pytest.raises(SourceError, match=r"quantization 'bitsandbytes'"):
        hf.weight_format(qwen2_config(quantization_config={"quant_method": "bitsandbytes"}), "acme/bnb")


def test_not_a_repo_id_stays_a_catalog_error(run: Callable[..., Result]) -> None:
    r = run("estimate", "deepseek-r1-distill-qwen-7")
    assert r.output.startswith("Error: unknown model 'deepseek-r1-distill-qwen-7'; did you mean")


def test_broken_safetensors_header(tmp_path: Path) -> None:
    p = tmp_path / "bad.safetensors"
    p.write_bytes(struct.pack("<Q", 5) + b"nope!")
    with pytest.raises(SourceError, match="not a safetensors file"):
        hf.read_safetensors_header(p)
    p.write_bytes(b"\x01")
    with pytest.raises(SourceError, match="truncated safetensors file"):
        hf.read_safetensors_header(p)


def test_hub_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "h"))
    assert hf.hub_cache_dir() == tmp_path / "h" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "c"))
    assert hf.hub_cache_dir() == tmp_path / "c"


def test_deploy_takes_a_repo_id(qwen_repo: Repo, tmp_path: Path, run: Callable[..., Result]) -> None:
    out = tmp_path / "bundle"
    r = run("deploy", qwen_repo.repo, "--target", "vllm", "--gpu", "l4", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "acme/tiny-qwen" in (out / "serve.sh").read_text()


def test_deploy_of_a_repo_that_is_not_r1_has_no_r1_reasoning_parser(
    qwen_repo: Repo, run: Callable[..., Result], tmp_path: Path
) -> None:
    out = tmp_path / "bundle"
    r = run("deploy", qwen_repo.repo, "--target", "vllm", "--gpu", "l4", "--out", str(out))
    assert r.exit_code == 0, r.output
    serve = (out / "serve.sh").read_text()
    assert "vllm serve acme/tiny-qwen" in serve
    assert "--reasoning-parser" not in serve
    r = run(
        "deploy",
        "deepseek-r1-distill-qwen-1.5b",
        "--target",
        "vllm",
        "--gpu",
        "l4",
        "--out",
        str(tmp_path / "r1"),
    )
    assert r.exit_code == 0, r.output
    assert "--reasoning-parser deepseek_r1" in (tmp_path / "r1" / "serve.sh").read_text()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """HF_HUB_OFFLINE unset and every TCP connection refused at once, as on a machine without a network
    (the socket call huggingface_hub's HTTP client would make fails the same way)."""
    import socket

    tried: list[tuple[str, int]] = []

    def refuse(addr: tuple[str, int], *a: Any, **kw: Any) -> Any:
        tried.append(addr)
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(hf, "_reachability", {})
    return tried


def test_unreachable_hub_fails_fast_in_one_line(
    no_network: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch, run: Callable[..., Result]
) -> None:
    """No network and nothing cached: one line naming the Hub address, and the hub client is asked only
    for its cache (local_files_only), so none of its retries run."""
    real = hub.hf_hub_download
    asked: list[bool] = []

    def spy(*a: Any, **kw: Any) -> str:
        asked.append(kw["local_files_only"])
        return str(real(*a, **kw))

    monkeypatch.setattr(hub, "hf_hub_download", spy)
    r = run("estimate", "acme/not-cached")
    hub_dir = Path(os.environ["HF_HOME"]) / "hub"
    assert r.exit_code == 2
    assert r.output.startswith(
        "Error: acme/not-cached: cannot reach the Hugging Face Hub (huggingface.co:443: Name or service not "
        f"known) and config.json is not in its cache ({hub_dir});"
    )
    assert r.output.count("\n") == 1
    assert asked == [True]
    assert no_network == [("huggingface.co", 443)]


def test_unreachable_hub_answers_from_the_cache(
    no_network: list[tuple[str, int]], run: Callable[..., Result]
) -> None:
    cfg = qwen2_config()
    tensors = qwen2_tensors(cfg)
    snap = hub_snapshot("acme/cached-offline", {"config.json": json.dumps(cfg).encode()})
    data = write_safetensors(snap / "model.safetensors", tensors)
    assert estimate_json(run, "acme/cached-offline", "--gpu", "l4")["weights_bytes"] == data


def test_unreachable_hub_without_headers(
    no_network: list[tuple[str, int]], run: Callable[..., Result]
) -> None:
    hub_snapshot("acme/config-only-2", {"config.json": json.dumps(qwen2_config()).encode()})
    r = run("estimate", "acme/config-only-2")
    cache = Path(os.environ["VRAMPLAN_HOME"]) / "hf" / "acme--config-only-2"
    assert r.output.startswith(
        "Error: acme/config-only-2: cannot reach the Hugging Face Hub (huggingface.co:443: Name or service "
        f"not known) and its safetensors headers are not cached ({cache});"
    )
    assert r.output.count("\n") == 1


def test_the_probe_connects_to_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert hf._hub_address() == ("proxy.internal", 3128)
    monkeypatch.setenv("NO_PROXY", "huggingface.co")
    assert hf._hub_address() == ("huggingface.co", 443)
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.example:8443")
    monkeypatch.delenv("HTTPS_PROXY")
    assert hf._hub_address() == ("hf-mirror.example", 8443)
