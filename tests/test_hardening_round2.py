"""The second hostile round (issue 18), the command line's part: what a path, a preset or the
terminal can do to kvcalc. Each cause has a test; docs/hardening.md has the table."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "configs"


def kvcalc(*args: str, env: dict | None = None, **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kvcalc", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60, **options)


def served_words(text: str) -> list[str]:
    """The words of the emitted command line, flags included, comments and YAML left out."""
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    if "YAML" in lines:
        lines = lines[lines.index("YAML") + 1:]
    return shlex.split(" ".join(ln.rstrip("\\").strip() for ln in lines))


# --- nothing from a path, a preset or a config becomes an engine option --------------------------

def test_a_folder_named_like_an_option_stays_a_path(tmp_path):
    folder = tmp_path / "--trust-remote-code"
    folder.mkdir()
    (folder / "config.json").write_text((FIXTURES / "qwen3-8b" / "config.json").read_text())
    for engine in ("vllm", "sglang", "trtllm"):
        done = kvcalc("fit", "./--trust-remote-code", "--gpu", "h100", "-c", "8k", "--weights-bytes", "16GB",
                      "--emit", engine, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        words = served_words(done.stdout)
        assert "--trust-remote-code" not in words, engine
        assert "./--trust-remote-code" in words, engine


def test_a_preset_source_or_id_that_is_no_hub_id_gives_a_placeholder(tmp_path, runner, kvcalc_app):
    import yaml

    preset = yaml.safe_load((Path(__file__).parent.parent / "model_presets" / "gpt2.yaml").read_text())
    preset["name"] = "evil"
    preset["source"] = ["https://huggingface.co/--trust-remote-code/x/blob/main/config.json"]
    (tmp_path / "evil.yaml").write_text(yaml.safe_dump(preset))
    result = runner.invoke(kvcalc_app, ["fit", str(tmp_path / "evil.yaml"), "--gpu", "h100", "-c", "1k",
                                        "--emit", "vllm"])
    assert result.exit_code == 0, result.output
    words = served_words(result.stdout)
    assert words[:3] == ["vllm", "serve", "MODEL"] and not any(w.startswith("--trust") for w in words)
    assert "replace MODEL" in result.stdout


def test_the_trtllm_snippet_does_not_overwrite_a_file(tmp_path):
    done = kvcalc("fit", "gpt2", "--gpu", "h100", "-c", "1k", "--emit", "trtllm")
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    script = "\n".join(lines[lines.index(next(ln for ln in lines if ln.startswith("(set -C"))):
                             lines.index("YAML") + 1])
    (tmp_path / "kvcalc-trtllm.yaml").write_text("mine\n")
    ran = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert ran.returncode != 0 and (tmp_path / "kvcalc-trtllm.yaml").read_text() == "mine\n"
    (tmp_path / "kvcalc-trtllm.yaml").unlink()
    ran = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert ran.returncode == 0 and "tokens_per_block: 32" in (tmp_path / "kvcalc-trtllm.yaml").read_text()


# --- output that cannot be written, and interruptions ---------------------------------------------

def test_a_full_disk_is_one_line(tmp_path):
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "kvcalc", "estimate", "llama-3-8b", "-c", "8k"], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == "error: cannot write the output: No space left on device"


def test_a_closed_stdout_is_one_line():
    done = subprocess.run([sys.executable, "-m", "kvcalc", "estimate", "gpt2", "-c", "1k"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=60,
                          preexec_fn=lambda: os.close(1))
    assert done.returncode == 1
    assert done.stderr.strip() == "error: cannot write the output: standard output is closed"


def test_an_ascii_terminal_gets_replacements_not_a_traceback():
    done = kvcalc("compare", "gpt2", "llama-3-8b", "-c", "8k", env={"PYTHONIOENCODING": "ascii"})
    assert done.returncode == 0 and "Traceback" not in done.stderr and "?" in done.stdout


def test_a_closed_pipe_ends_quietly():
    reader = subprocess.Popen([sys.executable, "-m", "kvcalc", "compare", "--all", "-c", "4k,8k,16k"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader.stdout.readline()
    reader.stdout.close()  # as `| head -1` does
    _, err = reader.communicate(timeout=60)
    assert reader.returncode != 0 and err == b""


def test_ctrl_c_is_130_and_one_line(runner, kvcalc_app, monkeypatch):
    import kvcalc.sources.resolve as resolve

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(resolve, "resolve", interrupted)
    result = runner.invoke(kvcalc_app, ["estimate", "gpt2"])
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1] == "error: interrupted"


def test_a_matplotlib_backend_that_does_not_exist(tmp_path):
    pytest.importorskip("matplotlib")
    done = kvcalc("plot", "gpt2", "-r", "1k..8k", "--out", str(tmp_path / "x.png"), env={"MPLBACKEND": "nonexistent"})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "x.png").stat().st_size > 1000


# --- options: bounded lists, no empty items, absurd sizes ------------------------------------------

@pytest.mark.parametrize(("args", "said"), [
    (["compare", "gpt2", "-c", ",".join(["8k"] * 30_000)], "30,000 items; at most 64"),
    (["plot", "gpt2", "--gpu-lines", ",".join(["h100"] * 5_000)], "5,000 items; at most 64"),
    (["compare", "gpt2", "-c", "8k,,32k"], "an empty item"),
    (["compare", "gpt2", "-c", "8k,"], "an empty item"),
    (["fit", "gpt2", "--gpu", "h100", "-c", "1k,,2k"], "an empty item"),
    (["variants", "llama-3-8b", "--groups", "2,,4"], "an empty item"),
    (["variants", "llama-3-8b", "--mla-rank", "999999999"], "outside 1..16,777,216"),
    (["variants", "llama-3-8b", "--rope-dim", "99999999999"], "outside 1..16,777,216"),
])
def test_lists_and_sizes_are_bounded(runner, kvcalc_app, args, said):
    result = runner.invoke(kvcalc_app, args)
    assert result.exit_code == 2 and said in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_json_is_decided_by_parsing_the_arguments(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["estimate", "--preset-dir", "--json", "gpt2"])
    assert result.exit_code == 1 and result.stderr.startswith("error: preset folder --json")
    result = runner.invoke(kvcalc_app, ["estimate", "no-such-model", "--", "--json"])
    assert result.exit_code == 2 and result.stderr.startswith("error:")
    result = runner.invoke(kvcalc_app, ["estimate", "no-such-model", "--json"])
    assert result.exit_code == 1 and json.loads(result.stderr)["exit_code"] == 1


# --- messages ------------------------------------------------------------------------------------

def test_an_error_never_spans_two_lines(runner, kvcalc_app, tmp_path):
    result = runner.invoke(kvcalc_app, ["estimate", str(tmp_path / "a\nb.yaml")])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1 and "\\n" in result.stderr


def test_no_such_file_only_when_there_is_none(runner, kvcalc_app, tmp_path):
    fifo = tmp_path / "f.yaml"
    os.mkfifo(fifo)
    result = runner.invoke(kvcalc_app, ["estimate", str(fifo)])
    assert result.exit_code == 1 and "not a regular file (a FIFO)" in result.stderr
    result = runner.invoke(kvcalc_app, ["estimate", str(tmp_path / "missing.yaml")])
    assert "no such file" in result.stderr
    result = runner.invoke(kvcalc_app, ["fit", "gpt2", "--gpu", "h100", "--gpu-catalog", str(fifo)])
    assert result.exit_code == 1 and "not a regular file (a FIFO)" in result.stderr


def test_empty_gpu_catalog_entries_are_ignored(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["fit", "gpt2", "--gpu", "h100", "-c", "1k"], env={"KVCALC_GPU_CATALOG": ":"})
    assert result.exit_code == 0, result.output
    assert "empty GPU catalog entry" in result.stderr


def test_an_override_keeps_the_built_in_aliases_unless_it_names_its_own(runner, kvcalc_app, tmp_path):
    entry = {"name": "my H100", "memory_bytes": 80 * 2**30, "memory_source": "measured"}
    (tmp_path / "keep.yaml").write_text(json.dumps({"gpus": {"h100-sxm": entry}}))
    (tmp_path / "replace.yaml").write_text(json.dumps({"gpus": {"h100-sxm": {**entry, "aliases": ["mine"]}}}))
    for catalog, alias, found in (("keep.yaml", "h100", True), ("replace.yaml", "h100", False),
                                  ("replace.yaml", "mine", True)):
        result = runner.invoke(kvcalc_app, ["fit", "gpt2", "--gpu", alias, "-c", "1k", "--json",
                                            "--gpu-catalog", str(tmp_path / catalog)])
        assert (result.exit_code == 0) is found, (catalog, alias, result.output)
        if found:
            assert json.loads(result.stdout)["gpu_memory_bytes"] == 80 * 2**30


@pytest.mark.parametrize("revision", ["../../../../x", "/etc/passwd", "main\n", "a" * 201, "refs/../../x", "v1.lock"])
def test_a_revision_that_walks_out_of_the_cache_is_a_usage_error(runner, kvcalc_app, tmp_path, revision):
    result = runner.invoke(kvcalc_app, ["estimate", "some-org/some-model", "--revision", revision],
                           env={"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert result.exit_code == 2 and "--revision" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # the Hub client never saw it
