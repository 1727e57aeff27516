"""Bad and unusual input, command by command: one `Error: ...` line on stderr, exit 2 for input errors
and 1 for failures at run time, never a traceback, nothing written.

Each case here was a traceback, a misleading answer or a silent mistake before (the adversarial
audit of November 2026); the cases that already behaved are listed in the audit report, not here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import Result

from vramplan.arch import MAX_LAYERS
from vramplan.catalog import parse_catalog


def one_error(res: Result, code: int = 2) -> str:
    """The one stderr line of a failed command (asserting there is exactly one, and no traceback)."""
    assert res.exit_code == code, (res.exit_code, res.output)
    assert "Traceback" not in res.output
    (line,) = res.stderr.splitlines()
    assert line.startswith("Error: ")
    return line


# --------------------------------------------------------------------------- usage errors: one line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["estimate", "r1-7b", "--context", "0"],
            "Error: Invalid value for --context: must be at least 1, got 0",
        ),
        (
            ["estimate", "r1-7b", "--context", "abc"],
            "Error: Invalid value for '--context' / '-c': 'abc' is not a valid integer.",
        ),
        (["catalog", "show"], "Error: Missing argument 'MODEL'."),
        (["bogus"], "Error: No such command 'bogus'."),
        (["check"], "Error: Missing argument 'LOGFILE'."),
        (
            ["deploy", "r1-7b"],
            "Error: Missing option '--target' / '-t'. Choose from: ollama, vllm, sglang, llama.cpp, k8s",
        ),
    ],
)
def test_usage_errors_are_one_line(run: Callable[..., Result], args: list[str], message: str) -> None:
    """Before: click's usage banner (`Usage: ...`, `Try ...`, a blank line) above the error."""
    assert one_error(run(*args)) == message


def test_a_top_level_option_error_is_one_line(run: Callable[..., Result], tmp_path: Path) -> None:
    line = one_error(run("--catalog", str(tmp_path), "catalog"))
    assert line == f"Error: Invalid value for '--catalog': File '{tmp_path}' is a directory."


def test_no_arguments_still_shows_the_help(run: Callable[..., Result]) -> None:
    res = run()
    assert "Commands:" in res.output and "estimate" in res.output


# --------------------------------------------------------------------------- empty names and paths


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["estimate", ""], "Error: the model name is empty; `vramplan catalog` lists the names it takes"),
        (
            ["catalog", "show", "  "],
            "Error: the model name is empty; `vramplan catalog` lists the names it takes",
        ),
        (
            ["recommend", "--model", ""],
            "Error: the model name is empty; `vramplan catalog` lists the names it takes",
        ),
        (["estimate", "--gguf", ""], "Error: --gguf names no file (an empty path)"),
        (["check", ""], "Error: LOGFILE names no file (an empty path)"),
        (["--catalog", "", "catalog"], "Error: --catalog or VRAMPLAN_CATALOG names no file (an empty path)"),
        (
            ["deploy", "r1-1.5b", "--target", "vllm", "--gpu", "l4", "--out", ""],
            "Error: Invalid value for --out: must not be empty",
        ),
    ],
)
def test_empty_names_and_paths(
    run: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    """Before: an empty path was the current folder (`.: is a directory`; `deploy --out ''` tried to
    write into it) and an empty model name was an unknown model ''."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert one_error(run(*args)) == message
    assert list(cwd.iterdir()) == []


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_host_memory_must_be_finite(run: Callable[..., Result], value: str) -> None:
    """Before: an internal error (cannot convert float NaN to integer)."""
    line = one_error(run("recommend", "--gpu", "h100", "--host-memory", value))
    assert line.startswith("Error: --host-memory must be a positive size in GiB, got ")


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_host_bandwidth_must_be_finite(run: Callable[..., Result], value: str) -> None:
    """Before: accepted, and `--json` printed `"host_bandwidth_gbps": NaN` (not JSON)."""
    line = one_error(run("recommend", "--gpu", "h100", "--host-bandwidth", value, "--json"))
    assert line == f"Error: --host-bandwidth must be a positive number of GB/s, got {value}"


def test_json_never_carries_nan() -> None:
    from vramplan.report import dumps

    with pytest.raises(ValueError, match="not JSON compliant"):
        dumps({"x": float("nan")})


def test_a_fractional_headroom_is_shown_as_given(run: Callable[..., Result]) -> None:
    """--headroom is in percent: 0.5 is half a percent. Before, the table said `headroom 0%`."""
    res = run("recommend", "--gpu", "h100", "--headroom", "0.5", "--top", "1", "--json")
    doc = json.loads(res.stdout)
    assert doc["options"]["headroom"] == 0.005
    assert "--headroom is in percent: 0.5 keeps 0.5 % free; for 50 % write --headroom 50" in doc["notes"]
    res = run("recommend", "--gpu", "h100", "--headroom", "5", "--top", "1", "--json")
    assert not [n for n in json.loads(res.stdout)["notes"] if n.startswith("--headroom")]
    res = run("recommend", "--gpu", "h100", "--headroom", "0.5", "--top", "1")
    assert "headroom 0.5%" in res.stdout


# --------------------------------------------------------------------------- contradictory options


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--gpu-layers", "10"],
            "Error: --gpu-layers is a llama.cpp / Ollama option; vllm keeps every layer on the GPUs",
        ),
        (
            ["--no-flash-attn", "--runtime", "sglang"],
            "Error: --no-flash-attn is a llama.cpp / Ollama option; sglang picks its attention backend itself",
        ),
    ],
)
def test_llama_cpp_options_on_vllm_are_refused(
    run: Callable[..., Result], args: list[str], message: str
) -> None:
    """Before: silently ignored, so the plan did not say what the user asked for."""
    assert one_error(run("estimate", "r1-7b", "--gpu", "h100", *args)) == message
    res = run("estimate", "r1-7b", "--gpu", "h100", *args, "--runtime", "llama.cpp")
    assert res.exit_code == 0, res.output


def test_deploy_refuses_gpu_layers_for_vllm(run: Callable[..., Result], tmp_path: Path) -> None:
    res = run(
        "deploy",
        "r1-7b",
        "--target",
        "vllm",
        "--gpu",
        "h100",
        "--gpu-layers",
        "3",
        "--out",
        str(tmp_path / "b"),
    )
    assert one_error(res).startswith("Error: --gpu-layers is a llama.cpp / Ollama option")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--gpu", "h100", "--model", "deepseek-r1:7b", "--quant", "fp8"],
            "Error: nothing to plan: no quantization runs with --model deepseek-r1:7b and --quant fp8; "
            "drop or change a filter",
        ),
        (
            ["--gpu", "h100", "--quant", "q4_K_M", "--runtime", "vllm"],
            "Error: nothing to plan: no quantization runs with --quant q4_K_M and --runtime vllm; "
            "drop or change a filter",
        ),
        (
            ["--quant", "fp8"],
            "Error: nothing to plan: no quantization runs with --quant fp8 on a machine without a GPU "
            "(vllm and sglang need one; plan for one with --gpu NAME[:COUNT]); drop or change a filter",
        ),
    ],
)
def test_recommend_filters_that_select_nothing(
    run: Callable[..., Result], args: list[str], message: str
) -> None:
    """Before: exit 0 with `Nothing fits.`, as if the machine were too small."""
    assert one_error(run("recommend", *args)) == message


# --------------------------------------------------------------------------- catalog files


def test_a_binary_catalog_file(run: Callable[..., Result], tmp_path: Path) -> None:
    """Before: an internal error (UnicodeDecodeError)."""
    f = tmp_path / "cat.yaml"
    f.write_bytes(b"\xbf\x8b$\x90\x00\xff")
    assert (
        one_error(run("--catalog", str(f), "catalog")) == f"Error: {f}: not a YAML catalog (not UTF-8 text)"
    )


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_an_empty_catalog_file(run: Callable[..., Result], tmp_path: Path, text: str) -> None:
    """Before: `(top level): expected a mapping, got NoneType`."""
    f = tmp_path / "cat.yaml"
    f.write_text(text)
    line = one_error(run("--catalog", str(f), "catalog"))
    assert line == f"Error: {f}: the catalog is empty; it needs at least a `variants:` list"


USER_CATALOG = {
    "architectures": {
        "tiny": {
            "source": "test",
            "config": {
                "model_type": "qwen2",
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "vocab_size": 1000,
                "max_position_embeddings": 4096,
            },
        }
    },
    "variants": [
        {
            "id": "my-model",
            "name": "Mine",
            "hf_repo": "me/my-model",
            "family": "distill",
            "architecture": "tiny",
            "default_quant": "bf16",
            "quality": {"source": "test", "aime_2024": 10},
            "quants": [
                {
                    "name": "bf16",
                    "format": "bf16",
                    "runtimes": ["vllm"],
                    "size": {"gb": 1.5, "source": "test"},
                    "tensor_types": {"output": "bf16"},
                }
            ],
        }
    ],
}


def _set(doc: dict, path: str, value: object) -> dict:  # type: ignore[type-arg]
    import copy

    doc = copy.deepcopy(doc)
    keys: list[str | int] = [int(k) if k.isdigit() else k for k in path.split(".")]
    node = doc
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("architectures", ["x"], "architectures: expected a mapping, got list"),
        ("architectures.tiny.config.hidden_size", None, "hidden_size: expected int, got None"),
        ("architectures.tiny.config.num_hidden_layers", None, "num_hidden_layers: expected int, got None"),
        (
            "architectures.tiny.config.num_hidden_layers",
            10**30,
            f"config: num_hidden_layers {10**30} exceeds {MAX_LAYERS}, more than any model has",
        ),
        ("variants.0.quants.0.tensor_types", ["x"], "tensor_types: expected a mapping, got list"),
        ("variants.0.quants.0.size.gb", float("nan"), "size.gb: expected a finite number, got nan"),
        ("variants.0.quants.0.size.gb", float("inf"), "size.gb: expected a finite number, got inf"),
        (
            "variants.0.quality.aime_2024",
            float("nan"),
            "quality.aime_2024: expected a finite number, got nan",
        ),
        ("variants.0.base_model", [], "base_model: expected str, got []"),
    ],
)
def test_malformed_user_catalog_fields(path: str, value: object, message: str) -> None:
    """Before: AttributeError / TypeError / OverflowError inside the loader or the estimator, and a
    huge layer count exhausted memory."""
    from vramplan.errors import CatalogError

    text = yaml.safe_dump(_set(USER_CATALOG, path, value))
    with pytest.raises(CatalogError) as err:
        parse_catalog(text, "cat.yaml")
    assert str(err.value).startswith("cat.yaml: ") and str(err.value).endswith(message), str(err.value)


def test_the_user_catalog_of_these_tests_is_valid() -> None:
    variants, _ = parse_catalog(yaml.safe_dump(USER_CATALOG), "cat.yaml")
    assert [v.id for v in variants] == ["my-model"]


# --------------------------------------------------------------------------- hardware


@pytest.mark.parametrize("value", ["٣", "０", "1٣"])
def test_cuda_visible_devices_takes_ascii_digits_only(value: str) -> None:
    """CUDA reads indices as ASCII digits; Python's int() also takes other scripts' digits, so before
    the audit "٣" (Arabic-Indic three) showed GPU 3 where CUDA shows none."""
    from nvml_fake import FakeNVML

    from vramplan.hardware import probe_machine
    from vramplan.host import HostInfo

    m = probe_machine(
        FakeNVML("h100_sxm_x8"), environ={"CUDA_VISIBLE_DEVICES": value}, host=HostInfo(1 << 36, 1 << 35, 4)
    )
    assert m.gpus == ()
    assert m.notes[0].startswith(f"CUDA_VISIBLE_DEVICES={value!r}: ")


# --------------------------------------------------------------------------- check


LOGS = Path(__file__).parent / "fixtures" / "logs" / "synthetic"


def test_check_refuses_a_quant_that_contradicts_an_ollama_tag(run: Callable[..., Result]) -> None:
    """As estimate does; before, check compared the log with the q8_0 build of deepseek-r1:7b."""
    log = str(LOGS / "ollama_device_lines.log")
    line = one_error(run("check", log, "--model", "deepseek-r1:7b", "--quant", "q8_0"))
    assert (
        line
        == "Error: deepseek-r1:7b is the q4_K_M build; drop --quant or name deepseek-r1-distill-qwen-7b instead"
    )
    assert run("check", log, "--model", "deepseek-r1:7b", "--quant", "Q4_K_M").exit_code == 0


def test_check_says_when_gpu_count_is_below_the_logs_parallelism(run: Callable[..., Result]) -> None:
    """Before, `--gpu h200:3` on a TP-8 log was silently planned for 8 GPUs."""
    res = run("check", str(LOGS / "vllm_r1_0528_fp8_tp8.log"), "--gpu", "h200:3", "--json")
    assert res.exit_code == 0, res.output
    assert (
        "--gpu h200:3 names fewer GPUs than the log's tensor x pipeline parallel 8; the estimate is for 8"
        in json.loads(res.stdout)["notes"]
    )


def test_recommend_nodes_beyond_every_models_layers(run: Callable[..., Result]) -> None:
    """Before: exit 0 and `Nothing fits.` on 800 H100s, with no word of why (pipeline parallel 100
    exceeds every model's layers)."""
    line = one_error(run("recommend", "--gpu", "h100:8", "--nodes", "100"))
    assert (
        line
        == "Error: --nodes 100 needs a pipeline stage per node, more than any planned model's layers (80)"
    )


def test_recommend_says_which_models_have_fewer_layers_than_nodes(run: Callable[..., Result]) -> None:
    res = run("recommend", "--gpu", "h100:8", "--nodes", "40", "--top", "1", "--json")
    assert res.exit_code == 0, res.output
    (note,) = [n for n in json.loads(res.stdout)["notes"] if n.startswith("left out")]
    assert note.startswith("left out, fewer layers than --nodes 40: deepseek-r1-0528-qwen3-8b, ")
    assert "deepseek-r1-distill-llama-70b" not in note  # 80 layers


# --------------------------------------------------------------------------- deploy


def test_deploy_keeps_a_dangling_link_without_force(run: Callable[..., Result], tmp_path: Path) -> None:
    """Before: a link to a missing file did not `exist`, so it was replaced without --force."""
    out = tmp_path / "b"
    out.mkdir()
    target = tmp_path / "elsewhere" / "serve.sh"
    (out / "serve.sh").symlink_to(target)
    args = ["deploy", "r1-7b", "--target", "vllm", "--gpu", "h100", "--out", str(out)]
    line = one_error(run(*args))
    assert line == f"Error: {out} already holds other versions of serve.sh; use --force to overwrite them"
    assert (out / "serve.sh").is_symlink() and sorted(p.name for p in out.iterdir()) == ["serve.sh"]
    res = run(*args, "--force")
    assert res.exit_code == 0, res.output
    assert not (out / "serve.sh").is_symlink() and not target.exists()  # the link replaced, not followed


def test_estimate_nodes_beyond_the_layers_names_nodes(run: Callable[..., Result]) -> None:
    """Before: `pipeline parallel 10000 exceeds ...`, though no --pp was given."""
    line = one_error(run("estimate", "r1", "--gpu", "h100:8", "--nodes", "10000"))
    assert line == "Error: --nodes 10000 (a pipeline stage per node) exceeds the model's 61 layers"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "{f}"], "Error: {f}: cannot read the log (Permission denied)"),
        (["estimate", "--gguf", "{f}"], "Error: {f}: cannot read it (Permission denied)"),
        (["--catalog", "{f}", "catalog"], "Error: {f}: cannot read the catalog (Permission denied)"),
    ],
)
def test_unreadable_files(
    run: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    """An unreadable file (simulated: the tests may run as root, who reads everything) is one line."""
    f = tmp_path / "secret"
    f.write_text("x")
    import builtins

    real_path_open, real_open = Path.open, builtins.open

    def deny_path(self: Path, *a: object, **k: object) -> object:
        if self == f:
            raise PermissionError(13, "Permission denied", str(self))
        return real_path_open(self, *a, **k)  # type: ignore[call-overload]

    def deny(file: object, *a: object, **k: object) -> object:
        if str(file) == str(f):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *a, **k)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", deny_path)
    monkeypatch.setattr(builtins, "open", deny)
    line = one_error(run(*[a.format(f=f) for a in args]))
    assert line.startswith(message.format(f=f)), line


@pytest.mark.parametrize(("layout", "runtime"), [("mla-kv", "vllm"), ("mha", "sglang")])
def test_llama_cpp_kv_layouts_on_vllm_are_refused(
    run: Callable[..., Result], layout: str, runtime: str
) -> None:
    """--kv-layout overrides the 671B's llama.cpp layout; before, vLLM / SGLang plans took it silently."""
    line = one_error(run("estimate", "r1", "--gpu", "h100:8", "--runtime", runtime, "--kv-layout", layout))
    assert line == (
        f"Error: the {layout} KV layout is llama.cpp's (a deepseek2 GGUF's); {runtime} caches MLA as its "
        "latent (mla-latent)"
    )
    assert (
        run("estimate", "r1", "--gpu", "h100:8", "--runtime", runtime, "--kv-layout", "mla-latent").exit_code
        == 0
    )


@pytest.mark.parametrize(
    ("n_ctx_train", "message"),
    [
        (0, "max_position_embeddings is 0; it must be at least 1"),
        (2**32 - 1, "max_position_embeddings 4294967295 exceeds 1073741824, more than any model has"),
    ],
)
def test_a_gguf_with_an_absurd_context_length(
    run: Callable[..., Result], tmp_path: Path, n_ctx_train: int, message: str
) -> None:
    """Before: 0 answered `--context must be a positive number of tokens, got 0` (no --context was
    given)."""
    import dataclasses

    from tests.support.tiny_gguf import TinySpec, write_tiny_gguf

    f = tmp_path / "m.gguf"
    write_tiny_gguf(f, dataclasses.replace(TinySpec(), n_ctx_train=n_ctx_train), shape_only=True)
    assert one_error(run("estimate", "--gguf", str(f), "--gpu", "l4")) == f"Error: {f}: {message}"


def test_vramplan_catalog_skips_empty_segments(
    run: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Already fine before the audit (kept here as the twin of the empty --catalog case)."""
    f = tmp_path / "mine.yaml"
    f.write_text(yaml.safe_dump(USER_CATALOG))
    monkeypatch.setenv("VRAMPLAN_CATALOG", f"::{f}:")
    res = run("catalog", "show", "my-model", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["id"] == "my-model"
