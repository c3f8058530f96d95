"""Hub ids (org/name) against a real HTTP server on 127.0.0.1 standing in for the Hub
through HF_ENDPOINT; the real Hub is never contacted. Each CLI run is a subprocess,
because huggingface_hub reads HF_ENDPOINT, HF_HUB_CACHE and HF_HUB_OFFLINE at import."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")

CONFIG = (Path(__file__).parent / "fixtures" / "configs" / "llama-3-8b" / "config.json").read_bytes()
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TAGGED = "89abcdef0123456789abcdef0123456789abcdef"


def _safetensors() -> bytes:
    """A small real safetensors file: a bf16 (4, 8) tensor and an f32 (8,) tensor."""
    header = {"a.weight": {"dtype": "BF16", "shape": [4, 8], "data_offsets": [0, 64]},
              "b.bias": {"dtype": "F32", "shape": [8], "data_offsets": [64, 96]},
              "__metadata__": {"format": "pt"}}
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(96)


WEIGHTS = _safetensors()


class FakeHub(BaseHTTPRequestHandler):
    """The endpoints hf_hub_download and get_safetensors_metadata call:
    HEAD/GET /{org}/{name}/resolve/{revision}/{file}."""

    requests: list[str] = []

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_HEAD(self):
        self._answer(body=False)

    def do_GET(self):
        self._answer(body=True)

    def _answer(self, body: bool):
        FakeHub.requests.append(f"{self.command} {self.path}")
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return self._error(404, "RepoNotFound")
        repo, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        token = self.headers.get("Authorization") == "Bearer hf_granted"
        if repo in ("gated/model", "gated/anonymous") and not token:
            # the Hub answers 401 without a token and 403 with one that lacks access
            return self._error(401 if repo == "gated/anonymous" else 403, "GatedRepo")
        if repo not in ("meta/llama-3-8b", "bare/model", "gated/model"):
            return self._error(404, "RepoNotFound")
        commit = {"main": COMMIT, COMMIT: COMMIT, "v1": TAGGED, TAGGED: TAGGED}.get(revision)
        if commit is None:
            return self._error(404, "RevisionNotFound")
        files = {"config.json": CONFIG, "model.safetensors": WEIGHTS} if repo != "bare/model" else {}
        if filename not in files:
            return self._error(404, "EntryNotFound", commit)
        data = files[filename]
        status, start, end = 200, 0, len(data)
        wanted = self.headers.get("Range")
        if wanted and wanted.startswith("bytes="):
            low, _, high = wanted[len("bytes="):].partition("-")
            start, end = int(low), min(len(data), int(high) + 1 if high else len(data))
            status = 206
        chunk = data[start:end]
        self.send_response(status)
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(chunk)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if body:
            self.wfile.write(chunk)

    def _error(self, status: int, code: str, commit: str | None = None):
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def hub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("hub-cache")


def run(args, endpoint: str, cache: Path, cwd: Path | None = None, **env):
    """kvcalc in a fresh interpreter with the Hub's variables set for this test only."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    clean.update(HF_ENDPOINT=endpoint, HF_HUB_CACHE=str(cache), HF_HOME=str(cache.parent / "hf-home"),
                 HF_HUB_DISABLE_TELEMETRY="1", NO_COLOR="1", COLUMNS="120", **env)
    clean["PYTHONPATH"] = str(Path(__file__).parent.parent) + os.pathsep + clean.get("PYTHONPATH", "")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "kvcalc", *args], capture_output=True, text=True, env=clean,
                          cwd=cwd, timeout=60)
    return proc, time.monotonic() - started


def estimate_json(args, endpoint, cache, **env):
    proc, _ = run(["estimate", *args, "-c", "8k", "--json"], endpoint, cache, **env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc


def test_hub_id_reads_config_json_like_the_preset(hub, cache):
    FakeHub.requests.clear()
    got, proc = estimate_json(["meta/llama-3-8b"], hub, cache)
    preset, _ = estimate_json(["llama-3-8b"], hub, cache)
    assert got["total_bytes"] == preset["total_bytes"] == 1_073_741_824
    assert got["bytes_per_token"] == preset["bytes_per_token"]
    note = [n for n in got["notes"] if n.startswith("read config.json")]
    assert note == [f"read config.json of meta/llama-3-8b at revision main (commit {COMMIT[:12]}) from {hub}"]
    assert proc.stderr == ""  # no progress bars, no retry logs
    assert all("config.json" in r for r in FakeHub.requests)  # nothing but config.json
    assert (cache / "models--meta--llama-3-8b" / "snapshots" / COMMIT / "config.json").is_file()


def test_second_run_and_offline_use_the_cache(hub, cache):
    estimate_json(["meta/llama-3-8b"], hub, cache)  # fills the cache if the first test did not
    FakeHub.requests.clear()
    got, _ = estimate_json(["meta/llama-3-8b"], hub, cache)
    assert FakeHub.requests == []  # a cached config needs no network
    assert any(n.endswith("from the Hub cache") for n in got["notes"])
    offline, proc = estimate_json(["meta/llama-3-8b"], "http://127.0.0.1:9", cache, HF_HUB_OFFLINE="1")
    assert offline["total_bytes"] == 1_073_741_824
    assert proc.stderr == ""


def test_offline_without_cache_says_so(hub, tmp_path):
    proc, elapsed = run(["estimate", "meta/llama-3-8b"], hub, tmp_path / "empty", HF_HUB_OFFLINE="1")
    assert proc.returncode == 1 and elapsed < 10
    assert proc.stderr.count("\n") == 1 and "HF_HUB_OFFLINE=1" in proc.stderr and "Traceback" not in proc.stderr


def test_revision(hub, tmp_path):
    FakeHub.requests.clear()
    got, _ = estimate_json(["meta/llama-3-8b", "--revision", "v1"], hub, tmp_path)
    assert any(f"at revision v1 (commit {TAGGED[:12]})" in n for n in got["notes"])
    assert any("/resolve/v1/config.json" in r for r in FakeHub.requests)
    proc, _ = run(["estimate", "meta/llama-3-8b", "--revision", "nope"], hub, tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: meta/llama-3-8b has no revision 'nope'") and proc.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "repo, words",
    [
        ("nobody/nothing", "error: no model 'nobody/nothing' on"),
        ("gated/model", "error: gated/model is a gated model on"),
        ("gated/anonymous", "error: gated/anonymous is a gated model on"),
        ("bare/model", "error: bare/model at revision main has no config.json on"),
    ],
)
def test_errors_are_one_line(hub, tmp_path, repo, words):
    proc, elapsed = run(["estimate", repo], hub, tmp_path)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith(words) and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr and elapsed < 10


def test_hf_token_opens_a_gated_model(hub, tmp_path):
    got, _ = estimate_json(["gated/model"], hub, tmp_path, HF_TOKEN="hf_granted")
    assert got["total_bytes"] == 1_073_741_824


def test_errors_as_json(hub, tmp_path):
    proc, _ = run(["estimate", "gated/model", "--json"], hub, tmp_path)
    assert proc.returncode == 1
    assert "gated" in json.loads(proc.stderr)["error"]


def test_unreachable_hub_fails_fast_and_quietly(tmp_path):
    proc, elapsed = run(["estimate", "meta/llama-3-8b"], "http://127.0.0.1:9", tmp_path)
    assert proc.returncode == 1 and proc.stdout == ""
    assert elapsed < 10, f"took {elapsed:.1f} s"
    line = proc.stderr
    assert line.count("\n") == 1 and "Traceback" not in line and "Retry" not in line, line
    assert "not in the Hub cache" in line and "not reachable" in line and "HF_ENDPOINT" in line
    assert "local config.json" in line


def test_existing_path_wins_over_hub_id(hub, tmp_path):
    folder = tmp_path / "meta" / "llama-3-8b"
    folder.mkdir(parents=True)
    (folder / "config.json").write_bytes(CONFIG)
    FakeHub.requests.clear()
    proc, _ = run(["estimate", "meta/llama-3-8b", "-c", "8k", "--json"], hub, tmp_path / "cache", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert FakeHub.requests == []
    assert not any(n.startswith("read config.json") for n in json.loads(proc.stdout)["notes"])


def test_revision_without_hub_id_is_a_warning(hub, tmp_path):
    proc, _ = run(["estimate", "llama-3-8b", "--revision", "v1", "-c", "8k"], hub, tmp_path)
    assert proc.returncode == 0
    assert "warning: --revision v1 applies to Hub ids (org/name) only; ignored" in proc.stderr


def test_compare_and_presets_show_take_hub_ids(hub, tmp_path):
    proc, _ = run(["compare", "meta/llama-3-8b", "llama-3-8b", "-c", "8k", "--json"], hub, tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len({row["total_bytes"] for row in rows}) == 1
    proc, _ = run(["presets", "show", "meta/llama-3-8b", "--json"], hub, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["source"][0] == f"{hub}/meta/llama-3-8b/blob/{COMMIT}/config.json"


def test_import_takes_a_hub_id(hub, tmp_path):
    out = tmp_path / "llama-from-hub.yaml"
    proc, _ = run(["import", "meta/llama-3-8b", "-o", str(out)], hub, tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    proc, _ = run(["estimate", str(out), "-c", "8k", "--json"], hub, tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    # 32 layers x 8 KV heads x (128 + 128) x 2 bytes x 8192 tokens
    assert data["total_bytes"] == 32 * 8 * 256 * 2 * 8192
    assert any(n.startswith("read config.json of meta/llama-3-8b") for n in data["notes"])


def test_fit_reads_checkpoint_bytes_from_safetensors_headers(hub, tmp_path):
    FakeHub.requests.clear()
    proc, _ = run(["fit", "meta/llama-3-8b", "--gpu", "h100", "-c", "8k", "--json"], hub, tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["weights_source"] == "safetensors headers (2 tensors in 1 file)"
    assert got["weights_bytes"] == 96  # the tensors as stored: 4 x 8 bf16 + 8 f32
    gets = [r for r in FakeHub.requests if r.startswith("GET") and "model.safetensors" in r]
    assert gets, FakeHub.requests  # headers only: a ranged GET of the file's start


def test_fit_falls_back_to_the_parameter_count(hub, cache):
    estimate_json(["meta/llama-3-8b"], hub, cache)
    proc, _ = run(["fit", "meta/llama-3-8b", "--gpu", "h100", "-c", "8k"], "http://127.0.0.1:9", cache,
                  HF_HUB_OFFLINE="1")
    assert proc.returncode == 0, proc.stderr
    assert "weights from the parameter count" in proc.stdout


def test_hub_id_spelling():
    from kvcalc.sources.hub import is_hub_id

    assert is_hub_id("Qwen/Qwen3-8B") and is_hub_id("meta-llama/Llama-3.1-8B")
    for ref in ("llama-3-8b", "./a/b", "a/b/c", "/a/b", "a/", "-a/b", "a/.b", "org/config.json", "a b/c"):
        assert not is_hub_id(ref), ref
