"""Hostile Hub answers and settings, against a real HTTP server on 127.0.0.1 standing in for
the Hub through HF_ENDPOINT (the real Hub is never contacted): each is one line, fast, with
nothing big and nothing outside the cache written. Runs are subprocesses, because
huggingface_hub reads HF_ENDPOINT, HF_HUB_CACHE and the timeouts at import."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")

from test_checkpoint_hardening import GOOD, HOSTILE_HEADERS, one, safetensors  # noqa: E402

ROOT = Path(__file__).parent.parent
CONFIG = (ROOT / "tests" / "fixtures" / "configs" / "llama-3-8b" / "config.json").read_bytes()
COMMIT = "0123456789abcdef0123456789abcdef01234567"
INDEX = "model.safetensors.index.json"
BIG = 20_000_000  # a shard whose data the server sends whole when asked for its first bytes


def _index(*names: str) -> bytes:
    return json.dumps({"metadata": {}, "weight_map": {f"t{i}": n for i, n in enumerate(names)}}).encode()


# repo -> {file: bytes}; a file missing from a repo is a 404 EntryNotFound
FILES: dict[str, dict[str, bytes]] = {
    "ok/model": {"config.json": CONFIG, "model.safetensors": safetensors(GOOD)},
    "big/config": {"config.json": CONFIG},  # HEAD says 5 GB
    "liar/config": {"config.json": CONFIG},  # HEAD says 100 bytes, GET sends 5 MiB
    "slow/config": {"config.json": CONFIG},  # GET sends one byte a second
    "slowhead/config": {"config.json": CONFIG},  # GET's status line comes one byte at a time
    "nocommit/model": {"config.json": CONFIG},
    "badcommit/model": {"config.json": CONFIG},
    "badetag/model": {"config.json": CONFIG},
    "sharded/model": {"config.json": CONFIG, INDEX: _index("a.safetensors", "b.safetensors"),
                      "a.safetensors": safetensors({"x": one()}),
                      "b.safetensors": safetensors({"y": one("BF16", (2,))})},
    "twice/model": {"config.json": CONFIG, INDEX: _index("a.safetensors", "b.safetensors"),
                    "a.safetensors": safetensors({"x": one()}), "b.safetensors": safetensors({"x": one()})},
    "escape/model": {"config.json": CONFIG, INDEX: _index("../../secret.safetensors")},
    "bigindex/model": {"config.json": CONFIG, INDEX: _index("a.safetensors")},  # HEAD says 5 GB
    "norange/model": {"config.json": CONFIG,
                      "model.safetensors": safetensors({"w": one("U8", (BIG,), (0, BIG))}, data=BIG)},
    "noweights/model": {"config.json": CONFIG},
}
for number, (_, header, _) in enumerate(HOSTILE_HEADERS):
    FILES[f"st{number}/model"] = {"config.json": CONFIG, "model.safetensors": safetensors(header)}


class Hostile(BaseHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args):
        pass

    def handle(self):
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):  # kvcalc hung up, as it should
            pass

    def do_HEAD(self):
        self._answer(body=False)

    def do_GET(self):
        self._answer(body=True)

    def _answer(self, body: bool):
        Hostile.requests.append(f"{self.command} {self.path}")
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return self._plain(404, {"X-Error-Code": "RepoNotFound"})
        repo, filename = "/".join(parts[:2]), "/".join(parts[4:])
        if repo not in FILES:
            return self._plain(404, {"X-Error-Code": "RepoNotFound"})
        if filename not in FILES[repo]:
            return self._plain(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT})
        data = FILES[repo][filename]
        headers = {"X-Repo-Commit": COMMIT, "ETag": '"' + "e" * 40 + '"', "Content-Type": "application/octet-stream"}
        if repo == "nocommit/model":
            del headers["X-Repo-Commit"]
        if repo == "badcommit/model":
            headers["X-Repo-Commit"] = "../../../../kvcalc-pwned"
        if repo == "badetag/model":
            headers["ETag"] = '"../../../../../kvcalc-pwned"'
        size = len(data)
        if not body and (repo == "big/config" or (repo == "bigindex/model" and filename == INDEX)):
            size = 5_000_000_000
        if not body and repo == "liar/config":
            size = 100
        if body and repo == "liar/config":
            data = b" " * (5 * 1024 * 1024)
            size = len(data)
        start, end, status = 0, len(data), 200
        wanted = self.headers.get("Range")
        if body and wanted and repo != "norange/model":  # norange ignores Range, as some servers do
            low, _, high = wanted[len("bytes="):].partition("-")
            start, end, status = int(low), min(len(data), int(high) + 1), 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
            size = end - start
        if body and repo == "slowhead/config":
            for byte in b"HTTP/1.0 200 OK\r\nX-Repo-Commit: " + COMMIT.encode() + b"\r\n\r\n":
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.3)
            return
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if not body:
            return
        if repo == "slow/config":
            for byte in data:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(1)
            return
        self.wfile.write(data[start:end])

    def _plain(self, status: int, headers: dict):
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def hub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _env(endpoint: str, cache: Path | None, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_ENDPOINT=endpoint, HF_HUB_DISABLE_TELEMETRY="1", NO_COLOR="1", COLUMNS="120",
               HF_HUB_ETAG_TIMEOUT="1", PYTHONPATH=str(ROOT))
    if cache is not None:
        env.update(HF_HUB_CACHE=str(cache), HF_HOME=str(cache.parent / "hf-home"))
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def cli(args, endpoint: str, cache: Path | None, **extra):
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "kvcalc", *args], capture_output=True, text=True,
                          env=_env(endpoint, cache, **extra), timeout=60)
    return proc, time.monotonic() - started


CALLS = r"""
import json, sys, time
from kvcalc.sources.hub import HubError, fetch_checkpoint, fetch_config
results = []
for kind, repo in json.loads(sys.argv[1]):
    started = time.monotonic()
    try:
        got = (fetch_config if kind == "config" else fetch_checkpoint)(repo)
        result = {"ok": None if got is None else getattr(got, "bytes", None) or str(got.path)}
    except Exception as exc:
        result = {"error": type(exc).__name__, "message": str(exc), "hub_error": isinstance(exc, HubError)}
    result["elapsed"] = time.monotonic() - started
    results.append(result)
print(json.dumps(results))
"""


def calls(pairs, endpoint: str, cache: Path) -> list[dict]:
    """fetch_config / fetch_checkpoint on each (kind, repo), in one fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", CALLS, json.dumps(pairs)], capture_output=True, text=True,
                          env=_env(endpoint, cache), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_check_revision():
    from kvcalc.sources.hub import check_revision

    for good in ("main", "v1.0", "refs/pr/12", COMMIT, "feature/x-y_z", "release-2024.01", "résumé"):
        assert check_revision(good) == good
    bad = ["", "../../x", "..", "a/../b", "/abs", "a\\b", "a b", "a\tb", "a\nb", "a\x00b", "a\x1bb", "x" * 201,
           "a..b", ".hidden", "refs/.x", "a//b", "a/", "x.lock", "a~1", "a^", "a:b", "a?", "a*", "a[", "@{x}", "@",
           "a.", "\u202e"]
    for revision in bad:  # 28 hostile revisions
        with pytest.raises(ValueError) as caught:
            check_revision(revision)
        assert "\n" not in str(caught.value), revision


def test_a_bad_revision_is_refused_before_the_cache_is_touched(tmp_path):
    from kvcalc.sources.hub import HubError, fetch_checkpoint, fetch_config

    for revision in ("../../../outside", "/etc", "a\\..\\b"):  # 3 revisions x 2 calls
        for call in (fetch_config, fetch_checkpoint):
            with pytest.raises(HubError, match="--revision"):
                call("org/name", revision)


def test_hub_answers_are_bounded_and_checked(hub, tmp_path):
    cache = tmp_path / "a" / "b" / "c" / "cache"
    Hostile.requests.clear()
    pairs = [("config", "big/config"), ("config", "liar/config"), ("config", "nocommit/model"),
             ("config", "badcommit/model"), ("config", "badetag/model"), ("checkpoint", "bigindex/model"),
             ("checkpoint", "escape/model"), ("checkpoint", "twice/model")]
    words = ["5,000,000,000 bytes", "sent more than 1,048,576 bytes", "without an X-Repo-Commit header",
             "not 40 hex digits", "ETag kvcalc will not use", "5,000,000,000 bytes", "not a file inside its folder",
             "'x' is also in"]
    results = calls(pairs, hub, cache)
    for (_, repo), result, expected in zip(pairs, results, words):  # 8 hostile answers
        assert result.get("hub_error"), (repo, result)
        assert expected in result["message"] and "\n" not in result["message"], (repo, result)
        assert result["elapsed"] < 5, (repo, result)
    # a 5 GB config and a 5 GB index are refused by their HEAD: never asked for
    assert not any(r.startswith("GET") and ("big/config" in r or "bigindex" in r) for r in Hostile.requests)
    # nothing big, nothing partial, nothing outside the cache
    assert all(p.stat().st_size < 2 * 1024 * 1024 for p in _files(tmp_path))
    assert not [p for p in _files(tmp_path) if p.name.endswith(".incomplete") or "pwned" in str(p)]
    assert all(cache in p.parents for p in _files(tmp_path))


def test_good_answers_still_read(hub, tmp_path):
    results = calls([("config", "ok/model"), ("checkpoint", "ok/model"), ("checkpoint", "sharded/model"),
                     ("checkpoint", "norange/model"), ("checkpoint", "noweights/model")], hub, tmp_path / "cache")
    assert "ok" in results[0] and all("ok" in r for r in results), results
    assert results[0]["ok"].endswith(f"snapshots/{COMMIT}/config.json")
    assert [r["ok"] for r in results[1:]] == [96, 4 + 4, BIG, None]
    assert all(r["elapsed"] < 5 for r in results)  # the 20 MB shard whose server ignores Range: 100 kB read


def test_hostile_safetensors_headers_from_the_hub_are_checked_as_on_disk(hub, tmp_path):
    pairs = [("checkpoint", f"st{number}/model") for number in range(len(HOSTILE_HEADERS))]
    results = calls(pairs, hub, tmp_path / "cache")
    for (case, _, words), result in zip(HOSTILE_HEADERS, results):  # 25 hostile headers
        assert result.get("error") == "HubAnswerError", (case, result)
        assert words in result["message"] and "\n" not in result["message"], (case, result)


@pytest.mark.parametrize("repo", ["slow/config", "slowhead/config"])
def test_a_slow_server_is_given_up_within_the_bound(hub, tmp_path, repo):
    # HF_HUB_ETAG_TIMEOUT=1: each request may wait 1 s, the whole fetch 3 s; the server sends one
    # byte a second (body), or one every 0.3 s (status line), so no single read ever times out
    cache = tmp_path / "cache"
    proc, elapsed = cli(["estimate", repo], hub, cache)
    assert proc.returncode == 1 and elapsed < 8, (elapsed, proc.stderr)
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "in time" in proc.stderr or "within 3 s" in proc.stderr, proc.stderr
    assert not [p for p in _files(tmp_path) if p.name.endswith(".incomplete")]


def test_errors_that_are_not_the_network_say_what_they_are(hub, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cases = [  # 9 settings and ids, each named in its line (none "not reachable")
        (["estimate", "ok/model"], {"HF_HUB_ETAG_TIMEOUT": "abc"}, "HF_HUB_ETAG_TIMEOUT='abc' is not a whole number"),
        (["estimate", "ok/model"], {"HF_HUB_DOWNLOAD_TIMEOUT": "1.5"}, "HF_HUB_DOWNLOAD_TIMEOUT='1.5'"),
        (["estimate", "ok/model"], {"HF_HUB_ETAG_TIMEOUT": "-1"}, "HF_HUB_ETAG_TIMEOUT='-1'"),
        (["estimate", "ok/model"], {"HF_ENDPOINT": "not a url"}, "HF_ENDPOINT='not a url' is not an http(s) URL"),
        (["estimate", "ok/model"], {"HF_HUB_CACHE": str(blocker / "cache")}, "set HF_HUB_CACHE (or HF_HOME) to a"),
        (["estimate", "ok/model"], {"HF_HUB_CACHE": None, "HF_HOME": str(blocker / "home")},
         "set HF_HUB_CACHE (or HF_HOME) to a"),
        (["estimate", "org/a..b"], {}, "is not a valid Hub id"),
        (["estimate", "org/" + "a" * 120], {}, "is not a valid Hub id"),
        (["estimate", "nocommit/model"], {}, "without an X-Repo-Commit header"),
    ]
    for args, extra, words in cases:
        proc, elapsed = cli(args, hub, tmp_path / "cache", **extra)
        assert proc.returncode == 1 and elapsed < 10, (args, extra, proc.stderr)
        line = proc.stderr
        assert line.count("\n") == 1 and "Traceback" not in line and words in line, (args, extra, line)
        assert "not reachable" not in line, line


def test_a_hostile_checkpoint_on_the_hub_leaves_fit_on_the_parameter_count(hub, tmp_path):
    proc, _ = cli(["fit", "st1/model", "--gpu", "h100", "-c", "8k", "--json"], hub, tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["weights_source"].startswith("parameter count")
    assert any("not 0 <= begin <= end" in note for note in data["notes"])


def test_the_server_really_is_local(hub):
    host, _, port = hub.removeprefix("http://").partition(":")
    assert host == "127.0.0.1"
    socket.create_connection((host, int(port)), timeout=1).close()
