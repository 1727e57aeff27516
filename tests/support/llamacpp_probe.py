"""Measure what llama.cpp (llama-cpp-python's low-level API) allocates for a GGUF model and a context.

`measure(...)` loads the model in a child interpreter, so a GGML_ASSERT abort (which Python cannot catch)
only kills the child, and returns a plain dict:

- exact bytes, from llama.cpp itself: ``model_size_bytes`` (``llama_model_size()``: the sum of ggml_nbytes
  of the file's tensors) and ``breakdown`` (``llama_get_memory_breakdown()``: model / context (KV) /
  compute bytes per buffer type, the numbers llama.cpp's own memory-fit code uses), summed into
  ``model_buffer_bytes``, ``kv_bytes`` and ``compute_bytes``;
- ``k_bytes`` / ``v_bytes``: the K/V split of ``kv_bytes``, computed with llama.cpp's rule
  (row_size(type, n_embd_{k,v}_gqa) x cells x streams per layer, no V for MLA) from the hparams it logs
  (``print_info``), kept only when it adds up to ``kv_bytes`` exactly and matches the logged MiB figures
  (``kv_split_checked``);
- what the log says, parsed: model / KV / compute / output buffer sizes in MiB per buffer name, the KV
  line's cells / layers / seqs / streams / types, graph nodes and splits;
- the effective ``n_ctx``, ``n_ctx_seq``, ``n_seq_max``, ``n_batch``, ``n_ubatch`` (API) and ``kv_size``
  (cells per stream) and ``n_stream``;
- ``log`` (INFO and above: what a llama.cpp program prints at default verbosity) and ``log_debug`` (all).

``no_alloc=True`` is llama.cpp's sizing-only mode (model params ``no_alloc`` with ``load_mode`` NONE):
nothing is allocated, weights are not read, and the breakdown still reports the sizes a real allocation
would have; the log's model and KV *buffer* lines then read 0.00 MiB (dummy buffers), while the
``llama_kv_cache: size = ...`` and compute-buffer lines carry the real figures.

Run this file directly to print one measurement:
``python tests/support/llamacpp_probe.py MODEL.gguf --n-ctx 4096 [--no-alloc] ...``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

MiB = 1024 * 1024

_RESULT_MARK = "@@VRAMPLAN_PROBE_RESULT@@"

# log line formats of llama.cpp as vendored by llama-cpp-python 0.3.36
RE_MODEL_BUF = re.compile(r"^load_tensors:\s+(?P<name>\S+) model buffer size =\s+(?P<mib>[\d.]+) MiB", re.M)
RE_KV_BUF = re.compile(r"^llama_kv_cache:\s+(?P<name>\S+) KV buffer size =\s+(?P<mib>[\d.]+) MiB", re.M)
RE_KV_SIZE = re.compile(
    r"^llama_kv_cache: size =\s+(?P<mib>[\d.]+) MiB \(\s*(?P<cells>\d+) cells,\s+(?P<layers>\d+) layers,\s*"
    r"(?P<seqs>\d+)/(?P<streams>\d+) seqs\), K \((?P<type_k>\w+)\):\s+(?P<k_mib>[\d.]+) MiB, "
    r"V \((?P<type_v>\w+)\):\s+(?P<v_mib>[\d.]+) MiB",
    re.M,
)
RE_COMPUTE = re.compile(r"^sched_reserve:\s+(?P<name>\S+) compute buffer size =\s+(?P<mib>[\d.]+) MiB", re.M)
RE_OUTPUT = re.compile(r"^llama_context:\s+(?P<name>\S+)\s+output buffer size =\s+(?P<mib>[\d.]+) MiB", re.M)
RE_GRAPH = re.compile(
    r"^sched_reserve: graph(?: \(pp bs=\d+, tg bs=\d+\))?: nodes = (?P<nodes>[\d /]+), splits = (?P<splits>[\d /]+),",
    re.M,
)
RE_PRINT_INFO = re.compile(r"^print_info: (?P<key>\w+)\s+= (?P<val>.*)$", re.M)
RE_CTX_PARAM = re.compile(r"^llama_context: (?P<key>\w+)\s+= (?P<val>.+)$", re.M)
RE_COMPUTE_CHECK = re.compile(
    r"^~llama_context:\s+(?P<name>\S+) compute buffer size (?:is|of)\s+(?P<mib>[\d.]+) MiB, "
    r"(?P<verdict>matches|does not match) expectation of\s+(?P<exp>[\d.]+) MiB",
    re.M,
)


def measure(
    gguf_path: str | os.PathLike[str],
    n_ctx: int,
    n_seq_max: int = 1,
    type_k: str = "f16",
    type_v: str = "f16",
    flash_attn: bool | str = False,
    n_ubatch: int = 512,
    n_batch: int | None = None,
    kv_unified: bool = False,
    no_alloc: bool = False,
    *,
    use_mmap: bool = True,
    use_extra_bufts: bool = False,
    n_outputs_max: int = 0,
    decode_tokens: int = 0,
    n_threads: int = 1,
    timeout: float = 300,
    python: str | None = None,
) -> dict[str, Any]:
    """Load `gguf_path` in llama.cpp in a child process and report its allocations (see module doc).

    n_batch defaults to 2048 (llama_context_default_params and llama-server); flash_attn takes True,
    False or "auto"; n_outputs_max 0 is llama.cpp's default (n_batch), llama-server passes its slot
    count; decode_tokens > 0 decodes that many tokens of sequence 0 after creating the context (real
    allocation only). The child's interpreter is `python`, else $VRAMPLAN_LLAMA_PYTHON, else this one.

    use_extra_bufts=False (the default here; llama.cpp's own default is True) keeps every weight in the
    plain CPU buffer: with True, the CPU backend may repack some quantized weights (Q4_0, Q4_K, IQ4_NL, ...
    depending on the CPU's features at run time) into a separate CPU_REPACK buffer, and with mmap the
    CPU_Mapped range then still spans the repacked tensors' file bytes, so the two buffers together exceed
    the file. use_mmap=True maps the file (CPU_Mapped buffer: the file range from the first to the last
    tensor, inter-tensor alignment padding included); False copies into an allocated CPU buffer.
    """
    ctx = context_params(
        n_ctx,
        n_seq_max,
        type_k,
        type_v,
        flash_attn,
        n_ubatch,
        n_batch,
        kv_unified,
        n_outputs_max,
        decode_tokens,
    )
    return measure_many(
        gguf_path,
        [ctx],
        no_alloc,
        use_mmap=use_mmap,
        use_extra_bufts=use_extra_bufts,
        n_threads=n_threads,
        timeout=timeout,
        python=python,
    )[0]


def context_params(
    n_ctx: int,
    n_seq_max: int = 1,
    type_k: str = "f16",
    type_v: str = "f16",
    flash_attn: bool | str = False,
    n_ubatch: int = 512,
    n_batch: int | None = None,
    kv_unified: bool = False,
    n_outputs_max: int = 0,
    decode_tokens: int = 0,
) -> dict[str, Any]:
    """One context's settings, as `measure_many` takes them (defaults as in `measure`)."""
    return {
        "n_ctx": int(n_ctx),
        "n_seq_max": int(n_seq_max),
        "type_k": type_k,
        "type_v": type_v,
        "flash_attn": flash_attn,
        "n_ubatch": int(n_ubatch),
        "n_batch": 2048 if n_batch is None else int(n_batch),
        "kv_unified": bool(kv_unified),
        "n_outputs_max": int(n_outputs_max),
        "decode_tokens": int(decode_tokens),
    }


def measure_many(
    gguf_path: str | os.PathLike[str],
    contexts: list[dict[str, Any]],
    no_alloc: bool = False,
    *,
    use_mmap: bool = True,
    use_extra_bufts: bool = False,
    n_threads: int = 1,
    timeout: float = 300,
    python: str | None = None,
) -> list[dict[str, Any]]:
    """Load the model once in one child and create each context of `contexts` (`context_params` dicts)
    in turn, freeing each before the next; one result per context, as `measure` returns it.

    Every result's ``log`` is the model-loading log followed by that context's own lines, so it reads
    like the log of a program that loaded the model and created that one context. If the child dies
    (a GGML_ASSERT abort), the contexts it did not report get ``ok: False`` and the log so far.
    """
    args = {
        "path": str(Path(gguf_path).resolve()),
        "contexts": contexts,
        "no_alloc": bool(no_alloc),
        "use_mmap": bool(use_mmap),
        "use_extra_bufts": bool(use_extra_bufts),
        "n_threads": int(n_threads),
    }
    exe = python or os.environ.get("VRAMPLAN_LLAMA_PYTHON") or sys.executable
    results: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="vramplan-probe-") as tmp:
        log_path = Path(tmp) / "llama.log"
        args["log_path"] = str(log_path)
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", str(n_threads))
        error = ""
        stderr = ""
        returncode: int | None = None
        try:
            proc = subprocess.run(
                [exe, str(Path(__file__).resolve()), "--child"],
                input=json.dumps(args),
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
            )
            stdout, stderr, returncode = proc.stdout, proc.stderr, proc.returncode
            error = f"llama.cpp child exited with {proc.returncode} before reporting (abort or crash)"
        except subprocess.TimeoutExpired as e:
            out = e.stdout or ""
            stdout = out.decode(errors="replace") if isinstance(out, bytes) else out
            err = e.stderr or ""
            stderr = err.decode(errors="replace") if isinstance(err, bytes) else err
            error = f"timed out after {timeout} s"
        for line in stdout.splitlines():
            if line.startswith(_RESULT_MARK):
                r: dict[str, Any] = json.loads(line[len(_RESULT_MARK) :])
                r["returncode"] = returncode
                r["stderr"] = stderr
                results[int(r.pop("index", 0))] = r
        partial = log_path.read_text(errors="replace") if log_path.exists() else ""
    out: list[dict[str, Any]] = []
    for i, ctx in enumerate(contexts):
        if i in results:
            out.append(results[i])
        else:
            params = {k: v for k, v in args.items() if k != "contexts"} | ctx
            out.append(
                {
                    "ok": False,
                    "error": error,
                    "returncode": returncode,
                    "params": params,
                    "stderr": stderr,
                    "log_debug": partial,
                    "log": partial,
                }
            )
    return out


def quantize_many(
    jobs: list[tuple[str | os.PathLike[str], str | os.PathLike[str], int, dict[str, int] | None]],
    *,
    n_threads: int = 1,
    timeout: float = 300,
    python: str | None = None,
) -> list[dict[str, Any]]:
    """Quantize with llama.cpp's own quantizer (`llama_model_quantize`, what llama-quantize runs), all
    jobs in one child process. Each job is (src, dst, ftype, imatrix): `ftype` a `llama_ftype` id;
    `imatrix` maps tensor names to their importance-vector length (ne[0] x ne[2]), each given a vector
    of ones, which the IQ1 / IQ2 / IQ3_XXS types require (llama-quant.cpp `tensor_requires_imatrix`) and
    which changes no type choice. Returns one {"ok", "rc", "log"} per job.
    """
    args = {
        "op": "quantize",
        "jobs": [
            {
                "src": str(Path(a).resolve()),
                "dst": str(Path(b).resolve()),
                "ftype": int(f),
                "imatrix": m or {},
            }
            for a, b, f, m in jobs
        ],
        "n_threads": int(n_threads),
    }
    res = _run_child(args, timeout, python)
    if "results" in res:
        return list(res["results"])
    return [res for _ in jobs]


def model_sizes(
    paths: list[str | os.PathLike[str]], *, timeout: float = 300, python: str | None = None
) -> list[dict[str, Any]]:
    """`llama_model_size()` and `llama_model_n_params()` of each file, loaded in sizing-only mode
    (no_alloc, nothing read), all in one child process: [{"ok", "model_size_bytes", "model_n_params"}]."""
    args = {"op": "sizes", "paths": [str(Path(p).resolve()) for p in paths], "n_threads": 1}
    res = _run_child(args, timeout, python)
    if "results" in res:
        return list(res["results"])
    return [res for _ in paths]


def _run_child(args: dict[str, Any], timeout: float, python: str | None) -> dict[str, Any]:
    exe = python or os.environ.get("VRAMPLAN_LLAMA_PYTHON") or sys.executable
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(args.get("n_threads", 1)))
    try:
        proc = subprocess.run(
            [exe, str(Path(__file__).resolve()), "--child"],
            input=json.dumps(args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout} s", "params": args}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_RESULT_MARK):
            result: dict[str, Any] = json.loads(line[len(_RESULT_MARK) :])
            result["returncode"] = proc.returncode
            result["stderr"] = proc.stderr
            return result
    return {
        "ok": False,
        "error": f"llama.cpp child exited with {proc.returncode} before reporting (abort or crash)",
        "returncode": proc.returncode,
        "params": args,
        "stderr": proc.stderr,
    }


def parse_log(text: str) -> dict[str, Any]:
    """The memory facts of a llama.cpp log (INFO level is enough), sizes in MiB as printed."""
    out: dict[str, Any] = {
        "model_buffers_mib": {m["name"]: float(m["mib"]) for m in RE_MODEL_BUF.finditer(text)},
        "kv_buffers_mib": {m["name"]: float(m["mib"]) for m in RE_KV_BUF.finditer(text)},
        "compute_buffers_mib": {m["name"]: float(m["mib"]) for m in RE_COMPUTE.finditer(text)},
        "output_buffers_mib": {m["name"]: float(m["mib"]) for m in RE_OUTPUT.finditer(text)},
        "context_params": {m["key"]: m["val"].strip() for m in RE_CTX_PARAM.finditer(text)},
        "print_info": {m["key"]: m["val"].strip() for m in RE_PRINT_INFO.finditer(text)},
    }
    kv = RE_KV_SIZE.search(text)
    if kv:
        out["kv_line"] = {
            "mib": float(kv["mib"]),
            "cells": int(kv["cells"]),
            "layers": int(kv["layers"]),
            "seqs": int(kv["seqs"]),
            "streams": int(kv["streams"]),
            "type_k": kv["type_k"],
            "type_v": kv["type_v"],
            "k_mib": float(kv["k_mib"]),
            "v_mib": float(kv["v_mib"]),
        }
    graphs = list(RE_GRAPH.finditer(text))
    if graphs:
        g = graphs[-1]
        out["graph"] = {"nodes": g["nodes"].strip(), "splits": g["splits"].strip()}
    chk = RE_COMPUTE_CHECK.search(text)
    if chk:
        out["compute_check"] = {
            "name": chk["name"],
            "mib": float(chk["mib"]),
            "matches": chk["verdict"] == "matches",
            "expected_mib": float(chk["exp"]),
        }
    return out


# ---------------------------------------------------------------------------------------------------------
# the child: everything below runs in the subprocess


def _child_main() -> None:
    args = json.loads(sys.stdin.read())
    try:
        if args.get("op") in ("quantize", "sizes"):
            result = _child_quantize(args) if args["op"] == "quantize" else _child_sizes(args)
            sys.stdout.write(_RESULT_MARK + json.dumps(result) + "\n")
        else:
            _child_measure(args)
    except Exception as e:  # report, don't crash: the parent wants the log either way
        result = {"ok": False, "error": f"{type(e).__name__}: {e}", "params": args, "index": -1}
        sys.stdout.write(_RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    # skip interpreter teardown: llama-cpp-python's atexit / ctypes finalizers add nothing here
    os._exit(0)


_GGML_TYPES = {
    "f32": 0,
    "f16": 1,
    "q4_0": 2,
    "q4_1": 3,
    "q5_0": 6,
    "q5_1": 7,
    "q8_0": 8,
    "iq4_nl": 20,
    "bf16": 30,
}


def _child_measure(args: dict[str, Any]) -> None:
    """Load the model, then create, measure and free each context; print one result line each."""
    import ctypes

    import llama_cpp as L

    log_file = open(args["log_path"], "w", buffering=1, encoding="utf-8")
    pieces: list[tuple[int, str]] = []
    state = {"level": 2}

    @L.llama_log_callback  # type: ignore[untyped-decorator]
    def on_log(level: int, text: bytes, user_data: Any) -> None:
        s = text.decode("utf-8", "replace")
        if level == 5:  # GGML_LOG_LEVEL_CONT continues the previous message
            level = state["level"]
        state["level"] = level
        pieces.append((level, s))
        log_file.write(s)

    L.llama_log_set(on_log, ctypes.c_void_p(0))
    L.llama_backend_init()

    def emit(index: int, res: dict[str, Any]) -> None:
        sys.stdout.write(_RESULT_MARK + json.dumps(res | {"index": index}) + "\n")
        sys.stdout.flush()

    model_args = {k: v for k, v in args.items() if k != "contexts"}
    mp = L.llama_model_default_params()
    mp.n_gpu_layers = 0
    mp.use_extra_bufts = args["use_extra_bufts"]
    mp.no_alloc = args["no_alloc"]
    if args["no_alloc"] or not args["use_mmap"]:
        mp.load_mode = L.LLAMA_LOAD_MODE_NONE
    else:
        mp.load_mode = L.LLAMA_LOAD_MODE_MMAP
    model = L.llama_model_load_from_file(args["path"].encode(), mp)
    load_pieces = list(pieces)
    if not model:
        errors = [t.strip() for lvl, t in pieces if lvl == 4 and t.strip()]
        for i, ctx_args in enumerate(args["contexts"]):
            res = {"ok": False, "params": model_args | ctx_args}
            res["error"] = "llama_model_load_from_file failed" + (f": {errors[-1]}" if errors else "")
            emit(i, _finish(res, load_pieces))
        return
    model_size = int(L.llama_model_size(model))
    model_n_params = int(L.llama_model_n_params(model))

    for i, ctx_args in enumerate(args["contexts"]):
        del pieces[len(load_pieces) :]
        res: dict[str, Any] = {"ok": False, "params": model_args | ctx_args}
        res["model_size_bytes"] = model_size
        res["model_n_params"] = model_n_params
        cp = L.llama_context_default_params()
        cp.n_ctx = ctx_args["n_ctx"]
        cp.n_batch = ctx_args["n_batch"]
        cp.n_ubatch = ctx_args["n_ubatch"]
        cp.n_seq_max = ctx_args["n_seq_max"]
        cp.n_outputs_max = ctx_args["n_outputs_max"]
        cp.n_threads = args["n_threads"]
        cp.n_threads_batch = args["n_threads"]
        cp.kv_unified = ctx_args["kv_unified"]
        cp.type_k = _GGML_TYPES[ctx_args["type_k"].lower()]
        cp.type_v = _GGML_TYPES[ctx_args["type_v"].lower()]
        fa = ctx_args["flash_attn"]
        cp.flash_attn_type = (
            L.LLAMA_FLASH_ATTN_TYPE_AUTO
            if fa == "auto"
            else (L.LLAMA_FLASH_ATTN_TYPE_ENABLED if fa else L.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        )
        ctx = L.llama_init_from_model(model, cp)
        if not ctx:
            errors = [t.strip() for lvl, t in pieces[len(load_pieces) :] if lvl == 4 and t.strip()]
            res["error"] = "llama_init_from_model failed" + (f": {errors[-1]}" if errors else "")
            emit(i, _finish(res, pieces))
            continue
        res["n_ctx"] = int(L.llama_n_ctx(ctx))
        res["n_ctx_seq"] = int(L.llama_n_ctx_seq(ctx))
        res["n_seq_max"] = int(L.llama_n_seq_max(ctx))
        res["n_batch"] = int(L.llama_n_batch(ctx))
        res["n_ubatch"] = int(L.llama_n_ubatch(ctx))
        res["n_vocab"] = int(L.llama_vocab_n_tokens(L.llama_model_get_vocab(model)))
        res["breakdown"] = _memory_breakdown(L, ctx)

        n = ctx_args["decode_tokens"]
        if n > 0 and not args["no_alloc"]:
            toks = (L.llama_token * n)(*[t % res["n_vocab"] for t in range(n)])
            rc = L.llama_decode(ctx, L.llama_batch_get_one(toks, n))
            res["decode_rc"] = int(rc)
            res["breakdown_after_decode"] = _memory_breakdown(L, ctx)

        L.llama_free(ctx)  # logs the compute-buffer check at debug level (real allocation only)
        res["ok"] = True
        emit(i, _finish(res, pieces))
    L.llama_model_free(model)


def _quiet_llama(L: Any, pieces: list[str]) -> Any:
    import ctypes

    @L.llama_log_callback  # type: ignore[untyped-decorator]
    def on_log(level: int, text: bytes, user_data: Any) -> None:
        pieces.append(text.decode("utf-8", "replace"))

    L.llama_log_set(on_log, ctypes.c_void_p(0))
    L.llama_backend_init()
    return on_log  # keep the callback alive


def _child_quantize(args: dict[str, Any]) -> dict[str, Any]:
    import ctypes

    import llama_cpp as L

    pieces: list[str] = []
    keep_cb = _quiet_llama(L, pieces)
    results = []
    for job in args["jobs"]:
        del pieces[:]
        qp = L.llama_model_quantize_default_params()
        qp.nthread = args["n_threads"]
        qp.ftype = job["ftype"]
        keep: list[Any] = [keep_cb]
        if job["imatrix"]:
            n_entries = len(job["imatrix"])
            entries = (L.llama_model_imatrix_data * (n_entries + 1))()
            for i, (name, n) in enumerate(sorted(job["imatrix"].items())):
                ones = (ctypes.c_float * n)(*([1.0] * n))
                keep += [ones, name.encode()]
                entries[i].name = keep[-1]
                entries[i].data = ctypes.cast(ones, ctypes.POINTER(ctypes.c_float))
                entries[i].size = n
            entries[n_entries].name = None
            keep.append(entries)
            qp.imatrix = ctypes.cast(entries, ctypes.POINTER(L.llama_model_imatrix_data))
        rc = L.llama_model_quantize(job["src"].encode(), job["dst"].encode(), ctypes.byref(qp))
        results.append({"ok": rc == 0, "rc": int(rc), "params": job, "log": "".join(pieces)})
    return {"ok": all(r["ok"] for r in results), "results": results}


def _child_sizes(args: dict[str, Any]) -> dict[str, Any]:
    import llama_cpp as L

    pieces: list[str] = []
    keep_cb = _quiet_llama(L, pieces)
    results = []
    for path in args["paths"]:
        del pieces[:]
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = 0
        mp.use_extra_bufts = False
        mp.no_alloc = True
        mp.load_mode = L.LLAMA_LOAD_MODE_NONE
        model = L.llama_model_load_from_file(path.encode(), mp)
        if not model:
            results.append({"ok": False, "path": path, "error": "load failed", "log": "".join(pieces)})
            continue
        results.append(
            {
                "ok": True,
                "path": path,
                "model_size_bytes": int(L.llama_model_size(model)),
                "model_n_params": int(L.llama_model_n_params(model)),
            }
        )
        L.llama_model_free(model)
    del keep_cb
    return {"ok": all(r["ok"] for r in results), "results": results}


def _finish(res: dict[str, Any], pieces: list[tuple[int, str]]) -> dict[str, Any]:
    full = "".join(t for _, t in pieces)
    info = "".join(t for lvl, t in pieces if lvl != 1)  # drop GGML_LOG_LEVEL_DEBUG
    res["log"] = info
    res["log_debug"] = full
    parsed = parse_log(full)
    res.update(parsed)
    bd = res.get("breakdown")
    if bd:
        res["model_buffer_bytes"] = sum(v["model"] for v in bd.values())
        res["kv_bytes"] = sum(v["context"] for v in bd.values())
        res["compute_bytes"] = sum(v["compute"] for v in bd.values())
    kv = parsed.get("kv_line")
    if kv:
        res["kv_size"] = kv["cells"]
        res["n_stream"] = kv["streams"]
        res["kv_layers"] = kv["layers"]
    if kv and bd:
        res.update(_kv_split(parsed["print_info"], kv, res["kv_bytes"]))
    return res


def _memory_breakdown(L: Any, ctx: Any) -> dict[str, dict[str, int]] | None:
    """Call the C++ `llama_get_memory_breakdown(ctx)` and read the std::map it returns.

    The function returns `std::map<ggml_backend_buffer_type_t, llama_memory_breakdown_data>` by value, so
    under the Itanium C++ ABI the caller passes the address of the result as a hidden first argument.
    libstdc++ lays a map out as: 8 bytes (comparator), the header node {int color; node* parent, left,
    right} and size_t count (48 bytes); each node is the 32-byte base followed by the pair {buft, model,
    context, compute}. The map is leaked (the child exits right after).
    """
    import ctypes

    lib = L.llama_cpp._lib
    fn = None
    for sym in ("_Z26llama_get_memory_breakdownPK13llama_context",):
        fn = getattr(lib, sym, None)
        if fn is not None:
            break
    if fn is None or sys.platform == "win32":
        return None
    fn.restype = ctypes.c_void_p
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    out = (ctypes.c_uint64 * 8)()
    fn(ctypes.addressof(out), ctx)
    base = ctypes.addressof(out)

    def u64(addr: int) -> int:
        return int(ctypes.c_uint64.from_address(addr).value)

    root, count = u64(base + 16), u64(base + 40)
    if count > 64:
        return None
    buft_name = _buft_name_fn()
    result: dict[str, dict[str, int]] = {}
    stack = [root] if root else []
    seen = 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > count:
            return None
        left, right = u64(node + 16), u64(node + 24)
        buft = u64(node + 32)
        name = buft_name(buft).decode() if buft_name else hex(buft)
        result[name] = {"model": u64(node + 40), "context": u64(node + 48), "compute": u64(node + 56)}
        stack += [n for n in (left, right) if n]
    return result if seen == count else None


def _buft_name_fn() -> Any:
    import ctypes

    import llama_cpp

    libdir = Path(llama_cpp.__file__).parent / "lib"
    for cand in sorted(libdir.glob("libggml-base.*")):
        try:
            lib = ctypes.CDLL(str(cand))
        except OSError:
            continue
        fn = lib.ggml_backend_buft_name
        fn.restype = ctypes.c_char_p
        fn.argtypes = [ctypes.c_void_p]
        return fn
    return None


# bytes per block and elements per block of the KV cache types (ggml/src/ggml-common.h)
_KV_TYPE_SIZE = {"f32": (4, 1), "f16": (2, 1), "bf16": (2, 1), "q8_0": (34, 32), "q4_0": (18, 32),
                 "q4_1": (20, 32), "q5_0": (22, 32), "q5_1": (24, 32), "iq4_nl": (18, 32)}  # fmt: skip


def _kv_split(info: dict[str, str], kv: dict[str, Any], kv_bytes: int) -> dict[str, Any]:
    """K and V bytes by llama.cpp's rule, from the hparams it prints; kept only if they add up exactly.

    Per layer K = row_size(type_k, n_embd_k_gqa) x cells x streams and V likewise, except that an MLA
    model stores no V.
    """

    def per_layer(key: str) -> list[int] | None:
        raw = info.get(key)
        if raw is None:
            return None
        vals = [int(x) for x in re.findall(r"\d+", raw)]
        return vals if len(vals) > 1 else vals * kv["layers"]

    k_gqa, v_gqa = per_layer("n_embd_k_gqa"), per_layer("n_embd_v_gqa")
    types_known = kv["type_k"].lower() in _KV_TYPE_SIZE and kv["type_v"].lower() in _KV_TYPE_SIZE
    if not k_gqa or not v_gqa or not types_known:
        return {"k_bytes": None, "v_bytes": None, "kv_split_checked": False}
    cells = kv["cells"] * kv["streams"]

    def row(t: str, n: int) -> int:
        bs, blk = _KV_TYPE_SIZE[t.lower()]
        return n // blk * bs

    k_bytes = sum(row(kv["type_k"], n) * cells for n in k_gqa[: kv["layers"]])
    v_full = sum(row(kv["type_v"], n) * cells for n in v_gqa[: kv["layers"]])
    # MLA models (deepseek2 with key_length_mla) keep no V: whichever reading adds up is the one
    v_bytes = v_full if k_bytes + v_full == kv_bytes else 0
    ok = (
        k_bytes + v_bytes == kv_bytes
        and abs(k_bytes / MiB - kv["k_mib"]) <= 0.006
        and abs(v_bytes / MiB - kv["v_mib"]) <= 0.006
    )
    return {"k_bytes": k_bytes if ok else None, "v_bytes": v_bytes if ok else None, "kv_split_checked": ok}


def _cli() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("gguf")
    p.add_argument("--n-ctx", type=int, default=4096)
    p.add_argument("--n-seq-max", type=int, default=1)
    p.add_argument("--type-k", default="f16")
    p.add_argument("--type-v", default="f16")
    p.add_argument("--flash-attn", default="off", choices=["on", "off", "auto"])
    p.add_argument("--n-ubatch", type=int, default=512)
    p.add_argument("--n-batch", type=int, default=None)
    p.add_argument("--kv-unified", action="store_true")
    p.add_argument("--no-alloc", action="store_true")
    p.add_argument("--decode-tokens", type=int, default=0)
    p.add_argument("--show-log", action="store_true")
    a = p.parse_args()
    fa: bool | str = {"on": True, "off": False, "auto": "auto"}[a.flash_attn]
    r = measure(
        a.gguf, a.n_ctx, a.n_seq_max, a.type_k, a.type_v, fa, a.n_ubatch, a.n_batch, a.kv_unified, a.no_alloc,
        decode_tokens=a.decode_tokens,
    )  # fmt: skip
    log = r.pop("log", "")
    r.pop("log_debug", None)
    print(json.dumps(r, indent=2))
    if a.show_log:
        print(log)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child_main()
    else:
        _cli()
