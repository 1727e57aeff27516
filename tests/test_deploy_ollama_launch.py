"""`deploy --target ollama --launch` against a stand-in Ollama server.

No real Ollama server can run in CI (no GPU, no model downloads), so these tests start a fake: a small
HTTP server on 127.0.0.1 in a thread. It is a fake, but it answers as a real server does: its responses
copy the shapes of Ollama's documented examples (ollama docs/api.md: "List Local Models", "Pull a
Model", "Create a Model", "Generate a completion", "List Running Models") and the fields of the Go types
the server encodes (ollama api/types.go `ProcessModelResponse`: `name`, `model`, `size`, `digest`,
`details`, `expires_at` as RFC 3339 with nanoseconds, `size_vram`, and `context_length` since
ollama 0.9.7, PR #11331). Like the real server it keeps models under their full names and reports them
as `model.ParseName(name).DisplayShortest()` (server/routes.go `PsHandler`, types/model/name.go): a
model created as `x` is listed as `x:latest`. Streamed `POST /api/pull` progress is NDJSON (`status`,
`digest`, `total`, `completed`, and an `{"error": ...}` line on failure).

The real `ollama` Python client talks to it, so what is tested is vramplan's use of the client: the
progress bar, the derived model, the smoke test, the loaded context against the plan, and every error
path (server down, model missing, pull interrupted, load failure). One test runs the launch with the
oldest `ollama` client pyproject.toml allows, when one is installed apart (VRAMPLAN_OLLAMA_OLDEST).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

MiB = 1 << 20
ROOT = Path(__file__).resolve().parent.parent
LAYERS = [("sha256:" + "a1" * 32, 1100 * MiB), ("sha256:" + "b2" * 32, 1 * MiB)]


# ollama types/model/name.go: the defaults a bare name is completed with
DEFAULT_HOST, DEFAULT_NAMESPACE, DEFAULT_TAG = "registry.ollama.ai", "library", "latest"


def shortest(name: str) -> str:
    """What the real server shows for a model name (`ParseName(name).DisplayShortest()`): the tag
    always, the host and namespace only where they are not the defaults. Written here from the Go
    source's rules, apart from the code under test."""
    tag = DEFAULT_TAG
    if name.rfind(":") > name.rfind("/"):
        name, tag = name.rsplit(":", 1)
    parts = name.split("/")
    model = parts[-1]
    namespace = parts[-2] if len(parts) > 1 else DEFAULT_NAMESPACE
    host = "/".join(parts[:-2]) if len(parts) > 2 else DEFAULT_HOST
    if host.lower() != DEFAULT_HOST:
        return f"{host}/{namespace}/{model}:{tag}"
    if namespace.lower() != DEFAULT_NAMESPACE:
        return f"{namespace}/{model}:{tag}"
    return f"{model}:{tag}"


# `details` as the real server fills it (docs/api.md "List Local Models", the deepseek-r1 entry)
DETAILS = {
    "parent_model": "",
    "format": "gguf",
    "family": "qwen2",
    "families": ["qwen2"],
    "parameter_size": "1.8B",
    "quantization_level": "Q4_K_M",
}


class FakeOllama(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.pull_mode = "ok"  # ok | missing | interrupted | truncated
        self.generate_error: str | None = None
        self.requests: list[tuple[str, str, Any]] = []
        self.created: dict[str, Any] = {}  # the request bodies, by the name the client sent
        self.loaded: list[str] = []  # models a generate loaded, as the server names them
        self.context_length = 4096
        self.ps_lists_loaded = True  # False: /api/ps lists nothing (the model was unloaded)
        # what /api/ps says the loaded model holds: all of it, and the part in VRAM
        self.ps_size = 2 * 1024 * MiB
        self.ps_size_vram = 2 * 1024 * MiB

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def find(self, name: str) -> str | None:
        """The created model `name` refers to, compared as the server does (names are case-insensitive)."""
        want = shortest(name).lower()
        return next((n for n in self.created if shortest(n).lower() == want), None)


class Handler(BaseHTTPRequestHandler):
    server: FakeOllama
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def _json(self, code: int, doc: Any) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path, None))
        if self.path == "/api/tags":
            # docs/api.md "List Local Models"
            models = [
                {
                    "name": shortest(name),
                    "model": shortest(name),
                    "modified_at": "2026-01-01T08:06:48.639712648-07:00",
                    "size": 1117320736,
                    "digest": "a42b25d8c10a841bd24724309898ae851466696a7d7f3a0a408b895538ccbc96",
                    "details": DETAILS,
                }
                for name in self.server.created
            ]
            self._json(200, {"models": models})
        elif self.path == "/api/ps":
            # docs/api.md "List Running Models", with api/types.go's context_length
            models = [
                {
                    "name": name,
                    "model": name,
                    "size": self.server.ps_size,
                    "digest": "a42b25d8c10a841bd24724309898ae851466696a7d7f3a0a408b895538ccbc96",
                    "details": DETAILS,
                    "expires_at": "2026-01-01T14:38:31.83753-07:00",
                    "size_vram": self.server.ps_size_vram,
                    "context_length": self.server.context_length,
                }
                for name in (self.server.loaded if self.server.ps_lists_loaded else [])
            ]
            self._json(200, {"models": models})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        body = self._body()
        self.server.requests.append(("POST", self.path, body))
        if self.path == "/api/pull":
            self._pull(body)
        elif self.path == "/api/create":
            if body.get("from") in (None, ""):
                self._json(400, {"error": "neither 'from' nor 'files' was specified"})
                return
            self.server.created[body["model"]] = body
            self._json(200, {"status": "success"})
        elif self.path == "/api/generate":
            if self.server.generate_error:
                self._json(500, {"error": self.server.generate_error})
            elif (found := self.server.find(body["model"])) is None:
                self._json(404, {"error": f"model '{body['model']}' not found"})
            else:
                if shortest(found) not in self.server.loaded:
                    self.server.loaded.append(shortest(found))
                self._json(
                    200,
                    {
                        # docs/api.md "Generate a completion", "No streaming"
                        "model": body["model"],
                        "created_at": "2026-01-01T19:22:45.499127Z",
                        "response": "<think>\n7 times 6 is 42.\n</think>\n\n42",
                        "done": True,
                        "done_reason": "stop",
                        "context": [1, 2, 3],
                        "total_duration": 2_000_000_000,
                        "load_duration": 1_000_000_000,
                        "prompt_eval_count": 14,
                        "prompt_eval_duration": 130_079_000,
                        "eval_count": 20,
                        "eval_duration": 500_000_000,
                    },
                )
        else:
            self._json(404, {"error": "not found"})

    def _pull(self, body: dict[str, Any]) -> None:
        lines: list[dict[str, Any]] = [{"status": "pulling manifest"}]
        mode = self.server.pull_mode
        if mode == "missing":
            lines.append({"error": "pull model manifest: file does not exist"})
        else:
            for digest, total in LAYERS:
                lines.append({"status": f"pulling {digest[7:19]}", "digest": digest, "total": total})
                for done in (total // 2, total):
                    lines.append(
                        {
                            "status": f"pulling {digest[7:19]}",
                            "digest": digest,
                            "total": total,
                            "completed": done,
                        }
                    )
            lines += [
                {"status": "verifying sha256 digest"},
                {"status": "writing manifest"},
                {"status": "removing any unused layers"},
                {"status": "success"},
            ]
        payload = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        if mode == "interrupted":
            # promise the whole body, send a third of it and drop the connection
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 3])
            self.wfile.flush()
            self.close_connection = True
            return
        if mode == "truncated":
            # a well-formed stream that stops before "success"
            payload = b"".join(json.dumps(line).encode() + b"\n" for line in lines[:4])
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOllama]:
    srv = FakeOllama()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    monkeypatch.setenv("OLLAMA_HOST", srv.host)
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def launch(run: Callable[..., Result], tmp_path: Path, *extra: str) -> Result:
    return run(
        "deploy",
        "r1-1.5b",
        "--target",
        "ollama",
        "--gpu",
        "l4",
        "--out",
        str(tmp_path / "b"),
        "--launch",
        *extra,
    )


def test_launch_pulls_creates_and_smoke_tests(
    run: Callable[..., Result], tmp_path: Path, server: FakeOllama
) -> None:
    res = launch(run, tmp_path)
    assert res.exit_code == 0, res.output
    out = res.output
    # the progress bar: one line per layer with its bytes; the statuses between them
    assert "layer a1a1a1a1a1a1" in out and "layer b2b2b2b2b2b2" in out
    assert "1.1/1.1 GiB" in out and "1.0/1.0 MiB" in out
    assert "pulling manifest" in out and "verifying sha256 digest" in out and "success" in out
    assert f"Ollama server at {server.host}: answering" in out
    name = "deepseek-r1-distill-qwen-1.5b-ctx4096"
    created = f"created {name} from deepseek-r1:1.5b (num_ctx 4096, temperature 0.6, top_p 0.95)"
    assert created in " ".join(out.split())  # one line, wrapped at 100 columns
    assert "smoke test: answered with 20 tokens, 40.0 tokens/s" in out
    assert "loaded: context 4096, 2.00 GiB in VRAM" in out
    assert f"chat with it: ollama run {name}" in out
    # what the client sent: the tag, the derived model with the plan's parameters, a short generation
    pulls = [b for m, p, b in server.requests if p == "/api/pull"]
    assert pulls[0]["model"] == "deepseek-r1:1.5b" and pulls[0]["stream"] is True
    assert server.created[name]["from"] == "deepseek-r1:1.5b"
    # the Modelfile's parameters: the plan's context and DeepSeek's recommended sampling
    assert server.created[name]["parameters"] == {"num_ctx": 4096, "temperature": 0.6, "top_p": 0.95}
    (gen,) = [b for m, p, b in server.requests if p == "/api/generate"]
    assert gen["model"] == name and gen["options"]["num_predict"] == 48


def test_launch_json_keeps_stdout_for_the_document(
    run: Callable[..., Result], tmp_path: Path, server: FakeOllama
) -> None:
    res = launch(run, tmp_path, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["launched"] is True and doc["target"] == "ollama"
    assert "layer a1a1a1a1a1a1" in res.stderr


def test_launch_warns_when_the_server_runs_another_context(
    run: Callable[..., Result], tmp_path: Path, server: FakeOllama
) -> None:
    server.context_length = 32768
    res = launch(run, tmp_path)
    assert res.exit_code == 0
    assert "warning: the server runs deepseek-r1-distill-qwen-1.5b-ctx4096 with context 32768" in res.output


def test_server_down(run: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """conftest points OLLAMA_HOST at a loopback port nothing listens on."""
    from vramplan.deploy import launch as launch_mod

    monkeypatch.setattr(launch_mod, "which", lambda name: f"/usr/bin/{name}")
    res = launch(run, tmp_path)
    assert res.exit_code == 1
    (line,) = res.stderr.splitlines()
    assert line.startswith("Error: no Ollama server answers at 127.0.0.1:9 (ConnectionError); start it")
    assert "run.sh" in line and "Traceback" not in res.output
    assert (tmp_path / "b" / "run.sh").exists()  # the files are written before the launch


def test_server_down_and_ollama_not_installed(
    run: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the audit the line said only how to start a server, not that Ollama is missing."""
    from vramplan.deploy import launch as launch_mod

    monkeypatch.setattr(launch_mod, "which", lambda name: None)
    res = launch(run, tmp_path)
    assert res.exit_code == 1
    (line,) = res.stderr.splitlines()
    assert line.startswith(
        "Error: no Ollama server answers at 127.0.0.1:9 (ConnectionError); Ollama is not installed here: "
        "install it (https://ollama.com/download), then start it with the plan's settings: "
    )


def test_model_missing(run: Callable[..., Result], tmp_path: Path, server: FakeOllama) -> None:
    server.pull_mode = "missing"
    res = launch(run, tmp_path)
    assert res.exit_code == 1
    assert res.stderr.splitlines() == [
        "Error: Ollama could not pull deepseek-r1:1.5b: pull model manifest: file does not exist; "
        "is the tag right? (https://ollama.com/library/deepseek-r1/tags)"
    ]
    assert not server.created


def test_pull_interrupted(run: Callable[..., Result], tmp_path: Path, server: FakeOllama) -> None:
    server.pull_mode = "interrupted"
    res = launch(run, tmp_path)
    assert res.exit_code == 1
    (line,) = res.stderr.splitlines()
    assert line.startswith("Error: the pull of deepseek-r1:1.5b was interrupted (")
    assert line.endswith("); run again to resume it")
    assert not server.created


def test_pull_stream_ends_early(run: Callable[..., Result], tmp_path: Path, server: FakeOllama) -> None:
    server.pull_mode = "truncated"
    res = launch(run, tmp_path)
    assert res.exit_code == 1
    assert res.stderr.splitlines() == [
        "Error: the pull of deepseek-r1:1.5b ended before it finished (last status: pulling a1a1a1a1a1a1); "
        "run again to resume it"
    ]


def test_model_fails_to_load(run: Callable[..., Result], tmp_path: Path, server: FakeOllama) -> None:
    server.generate_error = "timed out waiting for llama runner to start"
    res = launch(run, tmp_path)
    assert res.exit_code == 1
    (line,) = res.stderr.splitlines()
    assert line.startswith(
        "Error: deepseek-r1-distill-qwen-1.5b-ctx4096 did not answer: timed out waiting for llama runner"
    )
    assert "OLLAMA_LOAD_TIMEOUT" in line


def test_loaded_model_is_found_under_its_tagged_name(
    run: Callable[..., Result], tmp_path: Path, server: FakeOllama
) -> None:
    """The client creates `NAME`; the server lists it as `NAME:latest`. Before the fix the names were
    compared as written, so the loaded context was never compared with the plan's."""
    res = launch(run, tmp_path)
    assert res.exit_code == 0, res.output
    assert server.loaded == ["deepseek-r1-distill-qwen-1.5b-ctx4096:latest"]
    assert "loaded: context 4096, 2.00 GiB in VRAM (the plan: context 4096," in res.output
    assert "warning" not in res.output


def test_launch_says_when_the_loaded_model_is_not_listed(
    run: Callable[..., Result], tmp_path: Path, server: FakeOllama
) -> None:
    server.ps_lists_loaded = False  # unloaded at once, e.g. OLLAMA_KEEP_ALIVE=0
    res = launch(run, tmp_path)
    assert res.exit_code == 0, res.output
    assert (
        "warning: the server's running models (/api/ps) do not list deepseek-r1-distill-qwen-1.5b-ctx4096; "
        "its context could not be compared with the plan's"
    ) in " ".join(res.output.split())


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("deepseek-r1:1.5b", "deepseek-r1:1.5b"),
        ("deepseek-r1-distill-qwen-1.5b-ctx4096", "deepseek-r1-distill-qwen-1.5b-ctx4096:latest"),
        ("library/deepseek-r1", "deepseek-r1:latest"),
        ("registry.ollama.ai/library/deepseek-r1:7b", "deepseek-r1:7b"),
        ("me/r1", "me/r1:latest"),
        ("hf.co/unsloth/DeepSeek-R1-GGUF:UD-IQ1_S", "hf.co/unsloth/DeepSeek-R1-GGUF:UD-IQ1_S"),
        ("localhost:5000/me/r1", "localhost:5000/me/r1:latest"),
    ],
)
def test_names_compare_as_the_server_shows_them(name: str, shown: str) -> None:
    from vramplan.deploy.ollama import name_key

    assert shortest(name) == shown  # the fake's own reading of ollama types/model/name.go
    assert name_key(name) == name_key(shown) == shown.lower()


# --------------------------------------------------------------------------- the oldest client

OLDEST = os.environ.get("VRAMPLAN_OLLAMA_OLDEST", "")


def ollama_lower_bound() -> str:
    found = re.search(r'"ollama>=([0-9][0-9.]*)"', (ROOT / "pyproject.toml").read_text())
    assert found, "pyproject.toml names no ollama lower bound"
    return found[1]


def test_ollama_lower_bound_has_every_field_used() -> None:
    """ollama-python added `ProcessResponse.Model.context_length` in commit b23d79d (PR #538, first
    released in v0.5.2); before it `m.context_length` raised AttributeError after pull and create."""
    bound = tuple(int(x) for x in ollama_lower_bound().split("."))
    assert bound >= (0, 5, 2)


@pytest.mark.skipif(
    not OLDEST,
    reason="VRAMPLAN_OLLAMA_OLDEST names no folder with the oldest allowed client "
    "(pip install --no-deps --target DIR ollama==<pyproject's lower bound>)",
)
def test_launch_with_the_oldest_client_allowed(tmp_path: Path, server: FakeOllama) -> None:
    """The whole launch, in a subprocess that imports the oldest `ollama` client pyproject.toml
    allows (installed apart, with this environment's httpx and pydantic)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([OLDEST, str(ROOT)]), "OLLAMA_HOST": server.host}
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import importlib.metadata as m, ollama; print(m.version('ollama'), ollama.__file__)",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    version, where = probe.stdout.split()
    assert version == ollama_lower_bound()
    assert Path(where).resolve().is_relative_to(Path(OLDEST).resolve())
    argv = [
        "deploy",
        "r1-1.5b",
        "--target",
        "ollama",
        "--gpu",
        "l4",
        "--out",
        str(tmp_path / "b"),
        "--launch",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "vramplan", *argv], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = " ".join(done.stdout.split())
    assert "smoke test: answered with 20 tokens" in out
    assert "loaded: context 4096, 2.00 GiB in VRAM" in out


# ------------------------------------------------------------------ the loaded model beside the plan
# /api/ps as a real server answers it (nirmato/nirmato-ollama issue 13, `curl localhost:11434/api/ps`,
# Aug 2025: gemma3 fully on the GPU, size == size_vram); the tests below set size and size_vram.
REAL_PS = {
    "name": "gemma3:latest",
    "model": "gemma3:latest",
    "size": 5964735424,
    "size_vram": 5964735424,
    "expires_at": "2025-08-08T00:07:26.817827822+02:00",
}


def test_launch_verifies_the_loaded_size_against_the_plan(
    run: Callable[..., Result], tmp_path: Path, server: FakeOllama
) -> None:
    res = launch(run, tmp_path, "--json")
    assert res.exit_code == 0, res.output
    v = json.loads(res.stdout)["verified"]
    assert v["ok"] is True
    parts = {p["part"]: p for p in v["parts"]}
    assert parts["total"]["measured"] == parts["on the GPUs"]["measured"] == 2 * 1024 * MiB
    # the plan's own figures, each within the tolerance of the parts it sums (3 % to 25 %)
    assert 0.03 <= parts["total"]["tolerance"] <= 0.25
    assert abs(parts["on the GPUs"]["error"]) <= parts["on the GPUs"]["tolerance"]
    assert "verified: every part within its tolerance" in res.stderr


def test_a_loaded_size_beyond_the_tolerance_exits_1(
    run: Callable[..., Result], tmp_path: Path, server: FakeOllama
) -> None:
    server.ps_size = server.ps_size_vram = REAL_PS["size"]  # a 4.3B model's size: far above the plan
    res = launch(run, tmp_path)
    assert res.exit_code == 1
    assert "MISS" in res.stdout
    assert res.stderr.splitlines()[-1].startswith(
        "Error: the server ran, but its memory missed the plan beyond docs/accuracy.md's tolerances: total"
    )


def test_a_partial_offload_is_noted(run: Callable[..., Result], tmp_path: Path, server: FakeOllama) -> None:
    server.ps_size_vram = 1024 * MiB
    res = launch(run, tmp_path, "--json")
    v = json.loads(res.stdout)["verified"]
    assert any("in host memory" in n for n in v["notes"])
    assert {p["part"]: p["ok"] for p in v["parts"]}["on the GPUs"] is False


def test_no_verify_compares_nothing(run: Callable[..., Result], tmp_path: Path, server: FakeOllama) -> None:
    server.ps_size = server.ps_size_vram = REAL_PS["size"]
    res = launch(run, tmp_path, "--json", "--no-verify")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout).get("verified") is None
