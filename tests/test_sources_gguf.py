"""`vramplan estimate --gguf FILE`: the plan from a GGUF header equals the file, tensor by tensor.

The files are written by tests/support/tiny_gguf.py (the `gguf` package's writer, as llama.cpp's own
converter uses it); broken files are cut or patched from them.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from tests.support.tiny_gguf import TinySpec, WrittenModel, spec_for, write_tiny_gguf
from vramplan.arch import Architecture
from vramplan.errors import SourceError
from vramplan.sources.gguf_model import load_gguf
from vramplan.sources.gguf_reader import read_header, read_model

pytest.importorskip("gguf")

F16 = 2  # bytes per KV element: llama.cpp's default cache type is f16


def _kv_per_token(spec: TinySpec) -> int:
    """K + V bytes of one token over all layers in llama.cpp's f16 cache, by hand."""
    s = spec
    if s.arch == "deepseek2":
        if s.mla:  # the latent only: kv_lora_rank + rope, no V (llama-kv-cache.cpp: has_v = !is_mla)
            per_layer = (s.kv_lora_rank + s.qk_rope_head_dim) * F16
        else:  # every head's K (nope + rope) and V
            per_layer = s.heads * (s.qk_nope_head_dim + s.qk_rope_head_dim + s.v_head_dim) * F16
    else:
        per_layer = 2 * s.kv_heads * s.head_dim * F16
    return per_layer * s.layers


SPECS = {
    "llama": spec_for("llama"),
    "qwen2": spec_for("qwen2"),
    "qwen3": spec_for("qwen3"),
    "deepseek2-mla": spec_for("deepseek2", mla=True, q_lora_rank=64),
    "deepseek2-legacy": spec_for("deepseek2", mla=False),
    "llama-tied": spec_for("llama", tied_embeddings=True),
}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, WrittenModel]:
    d = tmp_path_factory.mktemp("gguf")
    out = {}
    for key, spec in SPECS.items():
        wt = "Q8_0" if key == "qwen2" else "F16"
        out[key] = write_tiny_gguf(d / f"{key}.gguf", spec, weight_type=wt)
    return out


def estimate_json(run: Callable[..., Result], *args: str) -> dict[str, Any]:
    r = run("estimate", *args, "--json")
    assert r.exit_code == 0, r.output
    doc: dict[str, Any] = json.loads(r.output)
    return doc


@pytest.mark.parametrize("key", list(SPECS))
def test_weights_params_and_kv_match_the_file(
    key: str, written: dict[str, WrittenModel], run: Callable[..., Result]
) -> None:
    w = written[key]
    doc = estimate_json(run, "--gguf", str(w.path), "--gpu", "l4")
    assert doc["weights_bytes"] == w.tensor_bytes
    assert doc["params"] == w.n_params
    assert doc["kv_bytes_per_token"] == _kv_per_token(w.spec)
    assert doc["model"] == key
    assert doc["runtime"] == "llama.cpp"
    # the per-GPU weights of the llama.cpp plan add up to the file (the input layer stays on the host)
    embd = next(t.nbytes for t in w.tensors if t.name == "token_embd.weight")
    assert sum(g["weights_bytes"] for g in doc["per_gpu"]) == w.tensor_bytes - embd


@pytest.mark.parametrize("key", list(SPECS))
def test_architecture_from_the_header(key: str, written: dict[str, WrittenModel]) -> None:
    s = written[key].spec
    variant, quant = load_gguf(written[key].path)
    a: Architecture = variant.architecture
    assert (a.hidden_size, a.num_hidden_layers, a.num_attention_heads) == (s.hidden, s.layers, s.heads)
    assert a.vocab_size == s.vocab and a.max_position_embeddings == s.n_ctx_train
    assert a.tie_word_embeddings == s.tied_embeddings
    if s.arch == "deepseek2":
        assert a.model_type == "deepseek_v3"  # sigmoid gating
        assert (a.kv_lora_rank, a.qk_rope_head_dim) == (s.kv_lora_rank, s.qk_rope_head_dim)
        assert (a.qk_nope_head_dim, a.v_head_dim) == (s.qk_nope_head_dim, s.v_head_dim)
        assert a.q_lora_rank == (s.q_lora_rank or None)
        assert (a.n_routed_experts, a.num_experts_per_tok) == (s.n_expert, s.n_expert_used)
        assert (a.moe_intermediate_size, a.first_k_dense_replace) == (s.expert_ffn, s.n_dense_lead)
        assert quant.gguf_mla is s.mla
    else:
        assert (a.num_key_value_heads, a.attn_head_dim) == (s.kv_heads, s.head_dim)
        assert a.attention_bias is (s.arch == "qwen2")
        assert a.qk_norm is (s.arch == "qwen3")
        assert quant.gguf_mla is None


def test_quant_name_is_the_file_type(written: dict[str, WrittenModel]) -> None:
    assert load_gguf(written["qwen2"].path)[1].name == "Q8_0"
    assert load_gguf(written["llama"].path)[1].name == "F16"


def test_mixed_types_without_file_type(tmp_path: Path) -> None:
    """No general.file_type (overrides): the name is the type that holds the most bytes."""
    w = write_tiny_gguf(tmp_path / "mix.gguf", spec_for("llama"), "Q4_0", overrides={"*ffn_down*": "Q8_0"})
    _, q = load_gguf(w.path)
    assert q.name == "Q4_0"
    assert sum(b for _, b in q.tensor_table or ()) == w.tensor_bytes


def test_mla_and_legacy_deepseek2_layouts(
    written: dict[str, WrittenModel], run: Callable[..., Result]
) -> None:
    mla = estimate_json(run, "--gguf", str(written["deepseek2-mla"].path), "--gpu", "l4")
    legacy = estimate_json(run, "--gguf", str(written["deepseek2-legacy"].path), "--gpu", "l4")
    s = SPECS["deepseek2-legacy"]
    assert mla["kv_bytes_per_token"] == (64 + 32) * 2 * 3
    assert legacy["kv_bytes_per_token"] == 4 * (32 + 32 + 32) * 2 * 3 == _kv_per_token(s)
    assert any("predates llama.cpp's MLA support" in n for n in legacy["notes"])


def test_the_table_names_the_file(written: dict[str, WrittenModel], run: Callable[..., Result]) -> None:
    r = run("estimate", "--gguf", str(written["qwen3"].path), "--gpu", "l4", "--context", "4096")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("qwen3  F16 on llama.cpp")


def test_ollama_runtime_and_cpu_plan(written: dict[str, WrittenModel], run: Callable[..., Result]) -> None:
    doc = estimate_json(run, "--gguf", str(written["llama"].path), "--runtime", "ollama")
    assert doc["runtime"] == "ollama"
    assert doc["per_gpu"] == []  # the test machine has no GPU: a host plan
    assert doc["weights_bytes"] == written["llama"].tensor_bytes


# --------------------------------------------------------------------------- split files


def _split(src: WrittenModel, out_dir: Path, parts: int) -> list[Path]:
    """Re-write a GGUF as `parts` shards the way llama-gguf-split does: the metadata in the first,
    split.no / split.count / split.tensors.count in each, the tensors spread over them."""
    import gguf

    reader = gguf.GGUFReader(str(src.path))
    tensors = list(reader.tensors)
    per = -(-len(tensors) // parts)
    paths = []
    for i in range(parts):
        p = out_dir / f"tiny-{i + 1:05d}-of-{parts:05d}.gguf"
        w = gguf.GGUFWriter(str(p), src.spec.arch)
        if i == 0:
            for field in reader.fields.values():
                if field.name.startswith("GGUF.") or field.name == "general.architecture":
                    continue
                vtype = field.types[0]
                sub = field.types[1] if vtype == gguf.GGUFValueType.ARRAY else None
                w.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
        w.add_uint16("split.no", i)
        w.add_uint16("split.count", parts)
        w.add_int32("split.tensors.count", len(tensors))
        for t in tensors[i * per : (i + 1) * per]:
            w.add_tensor(t.name, t.data, raw_shape=list(reversed(t.shape.tolist())), raw_dtype=t.tensor_type)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        paths.append(p)
    return paths


def test_split_model_sums_every_shard(
    written: dict[str, WrittenModel], tmp_path: Path, run: Callable[..., Result]
) -> None:
    src = written["deepseek2-mla"]
    shards = _split(src, tmp_path, 3)
    _, tensors = read_model(shards[0])
    assert len(tensors) == len(src.tensors)
    assert sum(t.nbytes for t in tensors) == src.tensor_bytes
    doc = estimate_json(run, "--gguf", str(shards[0]), "--gpu", "l4")
    assert doc["weights_bytes"] == src.tensor_bytes
    assert doc["kv_bytes_per_token"] == _kv_per_token(src.spec)
    assert doc["model"] == "tiny"
    # any shard names the model
    assert estimate_json(run, "--gguf", str(shards[2]), "--gpu", "l4")["weights_bytes"] == src.tensor_bytes


def test_split_model_missing_shard(
    written: dict[str, WrittenModel], tmp_path: Path, run: Callable[..., Result]
) -> None:
    shards = _split(written["llama"], tmp_path, 3)
    shards[1].unlink()
    r = run("estimate", "--gguf", str(shards[0]))
    assert r.exit_code == 2
    assert r.output == (
        f"Error: {shards[0]}: split model of 3 files; missing tiny-00002-of-00003.gguf (in {tmp_path})\n"
    )


# --------------------------------------------------------------------------- bad input: one line, exit 2


def _fails(run: Callable[..., Result], path: Path, expected: str) -> None:
    r = run("estimate", "--gguf", str(path))
    assert r.exit_code == 2, r.output
    assert r.output == f"Error: {path}: {expected}\n"


def test_not_a_gguf(tmp_path: Path, run: Callable[..., Result]) -> None:
    p = tmp_path / "model.gguf"
    p.write_text("<html>404</html>")
    _fails(run, p, "not a GGUF file (it starts with b'<htm', not b'GGUF')")
    p.write_bytes(b"")
    _fails(run, p, "not a GGUF file (an empty file)")


def test_missing_file_and_directory(tmp_path: Path, run: Callable[..., Result]) -> None:
    _fails(run, tmp_path / "nope.gguf", "no such file")
    _fails(run, tmp_path, "is a directory, not a GGUF file")


def test_unsupported_versions(
    written: dict[str, WrittenModel], tmp_path: Path, run: Callable[..., Result]
) -> None:
    data = bytearray(written["llama"].path.read_bytes())
    for version, msg in (
        (1, "GGUF version 1 is not supported (versions 2 and 3 are)"),
        (4, "GGUF version 4 is not supported (versions 2 and 3 are)"),
        (3 << 24, "a big-endian GGUF file; vramplan reads little-endian GGUF files only"),
    ):
        data[4:8] = struct.pack("<I", version)
        p = tmp_path / f"v{version}.gguf"
        p.write_bytes(bytes(data))
        _fails(run, p, msg)


def test_version_2_is_read(written: dict[str, WrittenModel], tmp_path: Path) -> None:
    data = bytearray(written["llama"].path.read_bytes())
    data[4:8] = struct.pack("<I", 2)  # v2 and v3 share the layout (v3 only added big-endian files)
    p = tmp_path / "v2.gguf"
    p.write_bytes(bytes(data))
    assert read_header(p).version == 2


@pytest.mark.parametrize(
    ("cut", "part"),
    [(10, "the preamble"), (200, "the metadata"), ("table", "the tensor table")],
)
def test_truncated_header(
    cut: int | str, part: str, written: dict[str, WrittenModel], tmp_path: Path, run: Callable[..., Result]
) -> None:
    src = written["qwen2"].path
    data = src.read_bytes()
    if cut == "table":  # a few bytes before the end of the tensor infos
        cut = read_header(src).data_offset - 40
    assert isinstance(cut, int)
    p = tmp_path / "cut.gguf"
    p.write_bytes(data[:cut])
    _fails(run, p, f"truncated GGUF file: it ends at byte {cut}, in the middle of {part}")


def test_truncated_data(written: dict[str, WrittenModel], tmp_path: Path, run: Callable[..., Result]) -> None:
    src = written["qwen2"]
    data = src.path.read_bytes()
    p = tmp_path / "short.gguf"
    p.write_bytes(data[:-100])
    header = read_header(src.path)
    last = max(header.tensors, key=lambda t: t.offset)
    end = header.data_offset + last.offset + last.nbytes
    _fails(
        run,
        p,
        f"truncated GGUF file: tensor {last.name} ends at byte {end} but the file has {len(data) - 100} bytes",
    )


def test_unknown_architecture(tmp_path: Path, run: Callable[..., Result]) -> None:
    import gguf
    import numpy as np

    p = tmp_path / "phi.gguf"
    w = gguf.GGUFWriter(str(p), "phi3")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((8, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    _fails(
        run, p, "architecture 'phi3' is not supported; vramplan reads GGUFs of llama, qwen2, qwen3, deepseek2"
    )


def test_missing_required_key(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    p = tmp_path / "bare.gguf"
    w = gguf.GGUFWriter(str(p), "llama")
    w.add_tensor("token_embd.weight", np.zeros((8, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(SourceError, match=r"llama\.embedding_length: missing"):
        load_gguf(p)


def test_model_and_gguf_together(written: dict[str, WrittenModel], run: Callable[..., Result]) -> None:
    path = str(written["llama"].path)
    r = run("estimate", "deepseek-r1:7b", "--gguf", path)
    assert r.exit_code == 2
    assert r.output == f"Error: give MODEL or --gguf FILE, not both ('deepseek-r1:7b' and {path!r})\n"
    r = run("estimate", "--gguf", path, "--quant", "q4_K_M")
    assert r.output == "Error: a GGUF file fixes its own quantization; drop --quant\n"
    r = run("estimate")
    assert r.exit_code == 2
    assert (
        r.output
        == "Error: name a MODEL (catalog id, Ollama tag or Hugging Face repo id) or give --gguf FILE\n"
    )


def test_catalog_path_imports_no_source() -> None:
    """`vramplan estimate deepseek-r1:7b` stays fast: no source module, hub client or gguf is imported."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from vramplan.cli import cli\n"
        "r = CliRunner().invoke(cli, ['estimate', 'deepseek-r1:7b', '--gpu', 'l4'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in sys.modules if m.startswith(('vramplan.sources', 'huggingface_hub', 'gguf'))))\n"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("key", ["qwen2", "qwen3", "deepseek2-mla", "deepseek2-legacy"])
def test_llama_cpp_agrees(key: str, written: dict[str, WrittenModel], run: Callable[..., Result]) -> None:
    """llama.cpp itself (sizing-only load) reports the same model bytes and KV-cache bytes."""
    pytest.importorskip("llama_cpp")
    from tests.support.llamacpp_probe import measure

    m = measure(written[key].path, n_ctx=512, no_alloc=True)
    doc = estimate_json(run, "--gguf", str(written[key].path), "--context", "512", "--gpu", "l4")
    assert doc["weights_bytes"] == m["model_size_bytes"]
    assert doc["kv_cache_bytes"] == m["kv_bytes"]


def _raw_gguf(kv_type: int = 8, tensor_type: int = 0, n_dims: int = 2) -> bytes:
    """A hand-built one-key, one-tensor GGUF v3 (gguf.h layout), to break one field at a time."""

    def s(text: str) -> bytes:
        return struct.pack("<Q", len(text)) + text.encode()

    out = b"GGUF" + struct.pack("<IQQ", 3, 1, 1)
    out += s("general.architecture") + struct.pack("<I", kv_type) + s("llama")
    out += s("token_embd.weight") + struct.pack("<I", n_dims) + struct.pack("<QQ", 32, 8)[: 8 * n_dims]
    out += struct.pack("<IQ", tensor_type, 0)
    out += b"\0" * (-len(out) % 32)
    return out + b"\0" * (32 * 8 * 4)


def test_malformed_headers(tmp_path: Path, run: Callable[..., Result]) -> None:
    p = tmp_path / "raw.gguf"
    p.write_bytes(_raw_gguf())
    assert [t.nbytes for t in read_header(p).tensors] == [32 * 8 * 4]
    for raw, msg in (
        (
            _raw_gguf(kv_type=13),
            "malformed GGUF header: key 'general.architecture' has unknown value type 13",
        ),
        (
            _raw_gguf(tensor_type=99),
            "malformed GGUF header: tensor 'token_embd.weight' has unknown ggml type 99",
        ),
        (
            _raw_gguf(n_dims=5),
            "malformed GGUF header: tensor 'token_embd.weight' has 5 dimensions (1 to 4 allowed)",
        ),
    ):
        p.write_bytes(raw)
        _fails(run, p, msg)
    p.write_bytes(b"GG")
    _fails(run, p, "truncated GGUF file: it ends at byte 2, in the middle of the preamble")


def test_nextn_layers_are_not_loaded(written: dict[str, WrittenModel], tmp_path: Path) -> None:
    """A deepseek2 file with a multi-token-prediction layer (block_count counts it, nextn_predict_layers
    says how many): its tensors are left out of the weights, as llama.cpp skips them by default."""
    import gguf
    import numpy as np

    src = written["deepseek2-mla"]
    reader = gguf.GGUFReader(str(src.path))
    p = tmp_path / "mtp.gguf"
    w = gguf.GGUFWriter(str(p), "deepseek2")
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        value = field.contents()
        if field.name == "deepseek2.block_count":
            value += 1
        vtype = field.types[0]
        sub = field.types[1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(field.name, value, vtype, sub_type=sub)
    w.add_uint32("deepseek2.nextn_predict_layers", 1)
    for t in reader.tensors:
        w.add_tensor(t.name, t.data, raw_shape=list(reversed(t.shape.tolist())), raw_dtype=t.tensor_type)
    mtp = np.zeros((128, 256), np.float16)  # eh_proj: [2 * hidden -> hidden]
    w.add_tensor("blk.3.nextn.eh_proj.weight", mtp)
    w.add_tensor("blk.3.attn_norm.weight", np.ones(128, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    variant, quant = load_gguf(p)
    assert variant.architecture.num_hidden_layers == 3
    assert variant.architecture.num_nextn_predict_layers == 1
    assert sum(b for _, b in quant.tensor_table or ()) == src.tensor_bytes
    assert quant.size is not None and quant.size.bytes == src.tensor_bytes + mtp.nbytes + 128 * 4
    assert "multi-token-prediction" in quant.notes
