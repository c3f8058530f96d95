"""No input makes kvcalc hang, blow up memory, crash or overwrite what it must not.

One test per cause (issue 10), then fuzz tests (hypothesis) over the preset parser, the
config.json parser and the option parsers that assert exit 0/1/2, no traceback, and no raw
control character on the terminal; each records how many cases it ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parent.parent
PRESETS = ROOT / "model_presets"
CONFIGS = ROOT / "tests" / "fixtures" / "configs"


def preset(**changes) -> dict:
    data = yaml.safe_load((PRESETS / "llama-3-8b.yaml").read_text())
    data.update(changes)
    return data


def write_yaml(folder: Path, data, name="llama-3-8b.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def run(runner, app, *args, **kwargs):
    result = runner.invoke(app, list(args), **kwargs)
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def one_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- resources ------------------------------------------------------------------------------

@pytest.mark.parametrize("layers", [{"count": 1_000_000_000},
                                    {"count": 32, "kinds": {"a": {"type": "full"}}, "pattern": ["a*10000000000"]},
                                    {"count": 32, "kinds": {"a": {"type": "full"}}, "pattern": ["a*" + "9" * 5000]}])
def test_huge_layer_counts_answer_fast(runner, kvcalc_app, tmp_path, layers):
    path = write_yaml(tmp_path, preset(layers=layers))
    started = time.perf_counter()
    result = run(runner, kvcalc_app, "estimate", str(path))
    assert result.exit_code == 1 and "layers" in one_line(result)
    assert time.perf_counter() - started < 2


def test_yaml_aliases_cannot_explode(runner, kvcalc_app, tmp_path):
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 9):
        laughs += f"{chr(97 + i)}: &{chr(97 + i)} [{', '.join(['*' + chr(96 + i)] * 10)}]\n"
    path = write_yaml(tmp_path, laughs)
    started = time.perf_counter()
    result = run(runner, kvcalc_app, "estimate", str(path))
    assert result.exit_code == 1 and "aliases are expanded" in one_line(result)
    assert time.perf_counter() - started < 2


def test_big_files_are_refused_before_parsing(runner, kvcalc_app, tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("name: big\n" + "# padding\n" * 200_000)
    result = run(runner, kvcalc_app, "estimate", str(path))
    assert result.exit_code == 1 and "not read" in one_line(result)
    config = tmp_path / "config.json"
    config.write_text(" " * (2 * 1024 * 1024) + "{}")
    assert run(runner, kvcalc_app, "estimate", str(config)).exit_code == 1


def test_error_lists_stop_after_a_few(runner, kvcalc_app, tmp_path):
    path = write_yaml(tmp_path, preset(**{f"bogus{i}": i for i in range(40)}))
    line = one_line(run(runner, kvcalc_app, "estimate", str(path)))
    assert "and 35 more" in line and len(line) < 500
    line = one_line(run(runner, kvcalc_app, "compare", *[f"nope{i}" for i in range(30)]))
    assert "and 25 more" in line


def test_divisors_come_in_pairs():
    from kvcalc.variants import gqa_group_counts

    for heads in (1, 2, 12, 64, 71, 128, 96, 65536):
        assert gqa_group_counts(heads) == [n for n in range(2, heads) if heads % n == 0]


@pytest.mark.parametrize("field, value", [
    ("attention.heads", 10**6), ("attention.head_dim", 10**9), ("layers.count", 10**7),
    ("max_context", 10**400), ("attention.kv_heads", 10**400),
])
def test_values_that_cannot_be_real_are_refused(runner, kvcalc_app, tmp_path, field, value):
    data = preset()
    node = data
    *parents, last = field.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    line = one_line(run(runner, kvcalc_app, "estimate", str(write_yaml(tmp_path, data))))
    assert field in line


# --- no traceback, ever ---------------------------------------------------------------------

@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a": ' * 50_000 + "1" + "}" * 50_000,
                                  '{"hidden_size": ' + "9" * 5000 + "}"])
def test_hostile_json(runner, kvcalc_app, tmp_path, text):
    (tmp_path / "config.json").write_text(text)
    assert run(runner, kvcalc_app, "estimate", str(tmp_path)).exit_code == 1


@pytest.mark.parametrize("text", ["a:\n" + "  - " * 3000 + "x\n", "name: " + "9" * 5000 + "\n",
                                  "[" * 50_000 + "]" * 50_000])
def test_hostile_yaml(runner, kvcalc_app, tmp_path, text):
    assert run(runner, kvcalc_app, "estimate", str(write_yaml(tmp_path, text))).exit_code == 1


def test_huge_numbers_in_configs_and_options(runner, kvcalc_app, tmp_path):
    data = json.loads((CONFIGS / "llama-3-8b" / "config.json").read_text())
    data["hidden_size"] = 10**400
    data["num_attention_heads"] = 10**300
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert run(runner, kvcalc_app, "estimate", str(tmp_path)).exit_code == 1
    for args in (["estimate", "gpt2", "-c", "1" + "0" * 400], ["estimate", "gpt2", "-b", "9" * 400],
                 ["fit", "gpt2", "--gpu-memory", "9" * 400], ["fit", "gpt2", "--gpu", "h100", "-n", "9" * 30],
                 ["plot", "gpt2", "-r", "1k..1" + "0" * 400], ["fit", "gpt2", "--gpu", "h100", "--gpu-util", "1e-400"]):
        assert run(runner, kvcalc_app, *args).exit_code == 2, args


def test_names_longer_than_the_file_system_allows(runner, kvcalc_app):
    for ref in ("a" * 5000, "a" * 300 + ".yaml", "a/" * 3000, ("b" * 300 + "/") * 3 + "config.json"):
        result = run(runner, kvcalc_app, "estimate", ref)
        assert result.exit_code == 1
        assert len(one_line(result)) < 400


def test_a_folder_that_cannot_be_listed(runner, kvcalc_app, tmp_path, monkeypatch):
    from kvcalc.sources import presets

    folder = tmp_path / "locked"
    folder.mkdir()
    real = os.scandir

    def scandir(path):
        if Path(path) == folder:
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    presets._index.cache_clear()
    result = run(runner, kvcalc_app, "estimate", "gpt2", "--preset-dir", str(folder))
    assert result.exit_code == 1 and "cannot list it" in one_line(result)


# --- strict reading -------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["true", "yes", "32.0", "'32'", "1.28e+2"])
def test_integers_only_where_integers_are_meant(runner, kvcalc_app, tmp_path, text):
    source = (PRESETS / "llama-3-8b.yaml").read_text().replace("  kv_heads: 8", f"  kv_heads: {text}")
    line = one_line(run(runner, kvcalc_app, "estimate", str(write_yaml(tmp_path, source))))
    assert "attention.kv_heads" in line


def test_duplicate_keys_in_yaml_and_json(runner, kvcalc_app, tmp_path):
    source = (PRESETS / "llama-3-8b.yaml").read_text() + "max_context: 4096\n"
    assert "duplicate key 'max_context'" in one_line(
        run(runner, kvcalc_app, "estimate", str(write_yaml(tmp_path, source))))
    text = (CONFIGS / "llama-3-8b" / "config.json").read_text().replace('{', '{"num_key_value_heads": 32, ', 1)
    (tmp_path / "config.json").write_text(text)
    assert "duplicate key 'num_key_value_heads'" in one_line(run(runner, kvcalc_app, "estimate", str(tmp_path)))


@pytest.mark.parametrize("args", [["-c", "８k"], ["-b", "８"], ["-c", "٣٢"], ["-b", "2.0"]])
def test_option_numbers_take_ascii_digits(runner, kvcalc_app, args):
    assert run(runner, kvcalc_app, "estimate", "gpt2", *args).exit_code == 2


def test_control_characters_never_reach_the_terminal(runner, kvcalc_app, tmp_path):
    data = preset(notes=["evil \x1b[2J\x1b]0;title\x07 note \u202e"], source=["\x1b[31mred"])
    result = run(runner, kvcalc_app, "estimate", str(write_yaml(tmp_path, data)))
    assert result.exit_code == 0
    assert "\x1b" not in result.output and "\u202e" not in result.output and "\\x1b[2J" in result.output
    result = run(runner, kvcalc_app, "estimate", "nosuch\x1b[2J")
    assert "\x1b" not in result.output


def test_an_empty_preset_folder_entry_is_not_the_current_folder(tmp_path):
    write_yaml(tmp_path, preset(name="mine"), "mine.yaml")
    env = {**os.environ, "KVCALC_PRESET_DIR": ":", "COLUMNS": "120"}
    out = subprocess.run([sys.executable, "-m", "kvcalc", "estimate", "mine"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 1 and "unknown model 'mine'" in out.stderr and "ignored" in out.stderr
    out = subprocess.run([sys.executable, "-m", "kvcalc", "estimate", "mine", "--preset-dir", ""], cwd=tmp_path,
                         env={**env, "KVCALC_PRESET_DIR": ""}, capture_output=True, text=True)
    assert out.returncode == 1 and "unknown model 'mine'" in out.stderr


def test_a_misnamed_preset_is_refused_alike_everywhere(runner, kvcalc_app, tmp_path):
    write_yaml(tmp_path, preset(name="other"), "mine.yaml")
    for args in (["presets"], ["estimate", "mine"], ["compare", "--all"]):
        result = run(runner, kvcalc_app, *args, "--preset-dir", str(tmp_path))
        assert result.exit_code == 1 and "does not match the file name" in one_line(result), args


def test_import_names_the_preset_after_its_file(runner, kvcalc_app, tmp_path):
    target = tmp_path / "My-Llama.yaml"
    assert run(runner, kvcalc_app, "import", str(CONFIGS / "llama-3-8b"), "-o", str(target)).exit_code == 0
    assert yaml.safe_load(target.read_text())["name"] == "my-llama"
    result = run(runner, kvcalc_app, "estimate", "my-llama", "--preset-dir", str(tmp_path))
    assert result.exit_code == 0
    assert run(runner, kvcalc_app, "import", str(CONFIGS / "llama-3-8b"), "-o", str(tmp_path / "Bad Name!.yaml")
               ).exit_code == 2


def test_force_replaces_only_regular_files_and_keeps_permissions(runner, kvcalc_app, tmp_path):
    source = str(CONFIGS / "llama-3-8b")
    assert run(runner, kvcalc_app, "import", source, "-o", str(tmp_path) + "/").exit_code == 1
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    assert "not a regular file" in one_line(run(runner, kvcalc_app, "import", source, "-o", str(fifo), "--force"))
    (tmp_path / "dir.yaml").mkdir()
    assert run(runner, kvcalc_app, "import", source, "-o", str(tmp_path / "dir.yaml"), "--force").exit_code == 1
    kept = tmp_path / "kept.yaml"
    kept.write_text("old")
    kept.chmod(0o640)
    assert run(runner, kvcalc_app, "import", source, "-o", str(kept), "--force").exit_code == 0
    assert kept.stat().st_mode & 0o777 == 0o640 and "name: kept" in kept.read_text()


def test_plot_out_needs_force_to_replace(runner, kvcalc_app, tmp_path):
    pytest.importorskip("matplotlib")
    image = tmp_path / "kv.png"
    image.write_bytes(b"mine")
    result = run(runner, kvcalc_app, "plot", "gpt2", "-r", "1k..8k", "--out", str(image))
    assert result.exit_code == 1 and image.read_bytes() == b"mine"
    assert run(runner, kvcalc_app, "plot", "gpt2", "-r", "1k..8k", "--out", str(image), "--force").exit_code == 0
    assert image.read_bytes().startswith(b"\x89PNG")


# --- what users see -------------------------------------------------------------------------

def test_piped_output_keeps_every_column():
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    out = subprocess.run([sys.executable, "-m", "kvcalc", "compare", "llama-3-70b", "-c", "8k"], env=env,
                         capture_output=True, text=True, check=True)
    assert "2,684,354,560" in out.stdout and "8 x 128" in out.stdout  # bytes and the text columns


def test_errors_are_one_line_or_json(runner, kvcalc_app):
    result = run(runner, kvcalc_app, "fit", "llama-3-70b", "--gpu", "h100", "--tp", "3")
    assert result.exit_code == 2 and "fit --help'" in one_line(result)
    assert "╭" not in result.output
    result = run(runner, kvcalc_app, "fit", "llama-3-70b", "--gpu", "h100", "--tp", "3", "--json")
    error = json.loads(result.stderr)
    assert error["exit_code"] == 2 and "TP 3" in error["error"] and error["hint"]
    result = run(runner, kvcalc_app, "estimate", "nosuch", "--json")
    assert json.loads(result.stderr)["exit_code"] == 1


def test_help_shows_every_word(runner, kvcalc_app):
    for command in ("estimate", "compare", "variants", "plot", "fit", "gpus", "import", "bench", "verify"):
        text = run(runner, kvcalc_app, command, "--help").output
        assert "<str>" not in text and "<bool>" not in text and "{" not in text, command
        assert text.strip(), command
    assert "kvcalc[plot]" in run(runner, kvcalc_app, "plot", "--help").output


def test_option_conflicts_are_said(runner, kvcalc_app):
    result = run(runner, kvcalc_app, "estimate", "gpt2", "--mla-layout", "expanded")
    assert result.exit_code == 0 and "ignored" in result.stderr
    result = run(runner, kvcalc_app, "estimate", "deepseek-v3", "--as", "mla-expanded", "--mla-layout", "latent")
    assert result.exit_code == 2
    rows = json.loads(run(runner, kvcalc_app, "compare", "gpt2", "GPT2", "-c", "1k", "--json").stdout)
    assert len(rows) == 1


def test_table_rows_add_up_to_the_total(runner, kvcalc_app):
    text = run(runner, kvcalc_app, "estimate", "jamba-v0.1", "-c", "8k").stdout
    lines = [line.split() for line in text.splitlines() if line.startswith(" mamba") or line.startswith(" attention")
             or line.startswith(" total")]
    state = [int(cells[-1].replace(",", "")) for cells in lines if cells[0] == "mamba"]
    total = next(cells for cells in lines if cells[0] == "total")
    assert int(total[-1].replace(",", "")) == sum(state) == 28 * 163_840 * 2


# --- fuzzing --------------------------------------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ODD = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30), st.just(10**400), st.floats(allow_nan=True),
    st.booleans(), st.none(), st.text(max_size=12), st.text(alphabet="\x00\x1b\u202e9k", max_size=6),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
FUZZ = settings(max_examples=int(os.environ.get("KVCALC_FUZZ_EXAMPLES", "150")), deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
COUNTS: dict[str, int] = {}


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + (key,)
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield prefix + (i,)
            yield from _paths(value, prefix + (i,))


def _mutate(data, path, value):
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


def _check(result):
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output[-500:])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "\x1b" not in result.output


def test_fuzz_preset_parser(runner, kvcalc_app, tmp_path):
    base = yaml.safe_load((PRESETS / "gemma-3-27b.yaml").read_text())
    paths = list(_paths(base))

    @FUZZ
    @given(st.sampled_from(paths), ODD)
    def check(path, value):
        COUNTS["preset"] = COUNTS.get("preset", 0) + 1
        data = _mutate(yaml.safe_load((PRESETS / "gemma-3-27b.yaml").read_text()), path, value)
        target = tmp_path / "gemma-3-27b.yaml"
        target.write_text(yaml.safe_dump(data, allow_unicode=True))
        _check(runner.invoke(kvcalc_app, ["estimate", str(target), "-c", "4k"]))

    check()
    assert COUNTS["preset"] >= FUZZ.max_examples
    print(f"fuzz: preset parser ran {COUNTS['preset']} cases")


FUZZ_CONFIGS = ["gemma-3-27b", "jamba-v0.1", "qwen3-next-80b-a3b", "deepseek-v3", "chatglm3-6b", "mpt-7b-instruct",
                "falcon-7b", "llama-4-scout"]


def test_fuzz_config_parser(runner, kvcalc_app, tmp_path):
    bases = {name: json.loads((CONFIGS / name / "config.json").read_text()) for name in FUZZ_CONFIGS}
    cases = [(name, path) for name, base in bases.items() for path in _paths(base)]

    @FUZZ
    @given(st.sampled_from(cases), ODD.filter(lambda v: not isinstance(v, float) or v == v))
    def check(case, value):
        COUNTS["config"] = COUNTS.get("config", 0) + 1
        name, path = case
        data = _mutate(json.loads((CONFIGS / name / "config.json").read_text()), path, value)
        try:
            text = json.dumps(data)
        except ValueError:  # an integer json cannot write: not a file a user could have
            return
        (tmp_path / "config.json").write_text(text)
        _check(runner.invoke(kvcalc_app, ["fit", str(tmp_path), "--gpu", "h100", "-c", "4k"]))

    check()
    assert COUNTS["config"] >= FUZZ.max_examples
    print(f"fuzz: config parser ran {COUNTS['config']} cases")


def test_fuzz_option_parsers(runner, kvcalc_app):
    texts = st.one_of(st.text(max_size=16), st.from_regex(r"[0-9.]{0,6}[kKmMgGiB]{0,3}", fullmatch=True),
                      st.sampled_from(["0", "-1", "1e400", "9" * 500, "８k", "1..", "..1k", "1k..1", "0.5", "nan"]))
    options = st.sampled_from([("estimate", "gpt2", "-c"), ("estimate", "gpt2", "-b"), ("fit", "gpt2", "--gpu-memory"),
                               ("fit", "llama-3-8b", "--gpu-util"), ("fit", "llama-3-70b", "--tp"),
                               ("compare", "gpt2", "-c"), ("plot", "gpt2", "-r"), ("plot", "gpt2", "--gpu-lines"),
                               ("fit", "gpt2", "--gpu"), ("variants", "gpt2", "--groups")])

    @FUZZ
    @given(options, texts)
    def check(option, text):
        COUNTS["options"] = COUNTS.get("options", 0) + 1
        command, model, flag = option
        args = [command, model, flag, text]
        if command == "fit" and flag not in ("--gpu", "--gpu-memory"):
            args += ["--gpu", "h100"]
        _check(runner.invoke(kvcalc_app, args))

    check()
    assert COUNTS["options"] >= FUZZ.max_examples
    print(f"fuzz: option parsers ran {COUNTS['options']} cases")
