"""`kvcalc estimate` and `kvcalc presets` as a user runs them (CliRunner).

Expected numbers come from the facts file by hand:
llama-3-70b: 80 layers x 8 KV heads x 128 dims x K and V x 2 bytes = 327,680 B/token.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

LLAMA3_70B_PER_TOKEN = 2 * 80 * 8 * 128 * 2


def run(runner, app, *args, **kw):
    return runner.invoke(app, list(args), **kw)


def test_estimate_table(runner, kvcalc_app):
    result = run(runner, kvcalc_app, "estimate", "llama-3-70b", "--context", "8k")
    assert result.exit_code == 0, result.output
    total = LLAMA3_70B_PER_TOKEN * 8192
    assert f"{total:,}" in result.stdout
    assert "2.50 GiB" in result.stdout
    row = next(line.split() for line in result.stdout.splitlines() if line.split()[:1] == ["full"])
    # layers, kind, count, tokens held, B/token, KV cache, bytes
    assert row == ["full", "full", "80", "8,192", "327,680", "2.50", "GiB", f"{total:,}"]


def test_estimate_json_fields(runner, kvcalc_app):
    result = run(runner, kvcalc_app, "estimate", "LLAMA-3-70B", "-c", "128K", "-b", "4", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == "llama-3-70b"
    assert (data["context"], data["batch"], data["kv_dtype"]) == (131072, 4, "bf16")
    assert data["mla_layout"] is None
    assert data["total_bytes"] == LLAMA3_70B_PER_TOKEN * 131072 * 4
    assert data["bytes_per_token"] == LLAMA3_70B_PER_TOKEN
    assert data["state_bytes"] == 0
    assert data["groups"] == [
        {"name": "full", "kind": "full", "attention": "gqa", "layers": 80, "window": None,
         "tokens": 131072, "bytes_per_token": LLAMA3_70B_PER_TOKEN,
         "bytes": LLAMA3_70B_PER_TOKEN * 131072 * 4, "state_bytes": 0, "of": None}
    ]
    assert data["conventions"] == []


def test_deepseek_v32_indexer_is_its_own_group(runner, kvcalc_app):
    data = json.loads(run(runner, kvcalc_app, "estimate", "deepseek-v3.2-exp", "-c", "1000", "--json").stdout)
    latent, index = data["groups"]
    assert (index["name"], index["kind"], index["of"], index["layers"]) == ("indexer", "indexer", "full", 61)
    # 61 layers x (128 fp8 bytes + one 4-byte fp32 scale) x 1,000 tokens
    assert index["bytes"] == 61 * (128 + 4) * 1000
    assert data["total_bytes"] == 61 * (576 * 2 + 132) * 1000 == latent["bytes"] + index["bytes"]
    assert len(data["conventions"]) == 1 and "transformers" in data["conventions"][0]


def test_estimate_defaults_to_max_context(runner, kvcalc_app):
    data = json.loads(run(runner, kvcalc_app, "estimate", "llama-3-8b", "--json").stdout)
    assert data["context"] == 8192
    assert data["total_bytes"] == 2 * 32 * 8 * 128 * 2 * 8192


def test_deepseek_v3_layouts(runner, kvcalc_app):
    latent = json.loads(run(runner, kvcalc_app, "estimate", "deepseek-v3", "-c", "1", "--json").stdout)
    expanded = json.loads(
        run(runner, kvcalc_app, "estimate", "deepseek-v3", "-c", "1", "--mla-layout", "expanded",
            "--json").stdout
    )
    assert latent["bytes_per_token"] == 61 * (512 + 64) * 2 == 70_272
    assert expanded["bytes_per_token"] == 61 * 128 * (128 + 64 + 128) * 2 == 4_997_120
    assert latent["mla_layout"] == "latent" and expanded["mla_layout"] == "expanded"


def test_kv_dtype_int4_is_a_quarter_of_bf16(runner, kvcalc_app):
    data = json.loads(
        run(runner, kvcalc_app, "estimate", "llama-3-8b", "-c", "8k", "--kv-dtype", "int4", "--json").stdout
    )
    assert data["total_bytes"] == 2 * 32 * 8 * 128 * 8192 // 2


def test_context_beyond_max_warns_on_stderr(runner, kvcalc_app):
    result = run(runner, kvcalc_app, "estimate", "llama-3-8b", "-c", "32k", "--json")
    assert result.exit_code == 0
    assert "beyond" in result.stderr and "8192" in result.stderr
    assert json.loads(result.stdout)["total_bytes"] == 2 * 32 * 8 * 128 * 2 * 32768


def test_encoder_says_no_kv_cache(runner, kvcalc_app):
    result = run(runner, kvcalc_app, "estimate", "bert-base")
    assert result.exit_code == 0
    assert "encoder" in result.stdout and "no KV cache" in result.stdout
    data = json.loads(run(runner, kvcalc_app, "estimate", "bert-base", "--json").stdout)
    assert data["total_bytes"] == 0 and data["encoder"] is True


def test_hybrid_reports_state_apart(runner, kvcalc_app):
    data = json.loads(run(runner, kvcalc_app, "estimate", "jamba-v0.1", "-c", "256k", "--json").stdout)
    assert data["total_bytes"] == 4 * 2 * 8 * 128 * 2 * 262144 == 4 * 2**30
    assert data["state_bytes"] == 28 * (8192 * 16 + 8192 * 4) * 2
    result = run(runner, kvcalc_app, "estimate", "jamba-v0.1", "-c", "256k")
    assert "state" in result.stdout


# --- bad input -----------------------------------------------------------------------


def test_unknown_model_suggests(runner, kvcalc_app):
    result = run(runner, kvcalc_app, "estimate", "lama-3-70b")
    assert result.exit_code == 1
    assert "unknown model 'lama-3-70b'" in result.stderr
    assert "llama-3-70b" in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.output


@pytest.mark.parametrize("value", ["0", "-3", "lots", "1.2345k"])
def test_bad_context_is_usage_error(runner, kvcalc_app, value):
    result = run(runner, kvcalc_app, "estimate", "llama-3-8b", "--context", value)
    assert result.exit_code == 2
    assert "--context" in result.stderr


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_bad_batch_is_usage_error(runner, kvcalc_app, value):
    assert run(runner, kvcalc_app, "estimate", "llama-3-8b", "--batch", value).exit_code == 2


def test_bad_dtype_is_usage_error(runner, kvcalc_app):
    assert run(runner, kvcalc_app, "estimate", "llama-3-8b", "--kv-dtype", "fp6").exit_code == 2


def test_malformed_yaml_names_file(runner, kvcalc_app, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nattention: [unclosed\n")
    result = run(runner, kvcalc_app, "estimate", str(bad))
    assert result.exit_code == 1
    assert str(bad) in result.stderr and "line" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_invalid_preset_names_file_and_dotted_field(runner, kvcalc_app, tmp_path):
    text = Path(__file__).parent.parent.joinpath("model_presets", "llama-3-8b.yaml").read_text()
    bad = tmp_path / "broken.yaml"
    bad.write_text(text.replace("kv_heads: 8", "kv_heads: 5"))
    result = run(runner, kvcalc_app, "estimate", str(bad))
    assert result.exit_code == 1
    assert f"{bad}: attention: kv_heads=5 must divide heads=32" in result.stderr


def test_yaml_is_loaded_safely(runner, kvcalc_app, tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    result = run(runner, kvcalc_app, "estimate", str(evil))
    assert result.exit_code == 1 and "pwned" not in result.output


def test_a_name_never_escapes_the_preset_folders(runner, kvcalc_app, tmp_path, monkeypatch):
    # a preset-shaped file in the working directory is not found by bare name
    text = Path(__file__).parent.parent.joinpath("model_presets", "llama-3-8b.yaml").read_text()
    (tmp_path / "mine.yaml").write_text(text.replace("name: llama-3-8b", "name: mine"))
    monkeypatch.chdir(tmp_path)
    assert run(runner, kvcalc_app, "estimate", "mine").exit_code == 1
    assert run(runner, kvcalc_app, "estimate", "./mine.yaml").exit_code == 0
    assert run(runner, kvcalc_app, "estimate", "mine.yaml").exit_code == 0


def test_missing_path(runner, kvcalc_app, tmp_path):
    result = run(runner, kvcalc_app, "estimate", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 1 and "no such file" in result.stderr


# --- user presets ----------------------------------------------------------------------


def user_preset(folder: Path, name: str = "my-model") -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nsource: [my notes]\nparameters: 1B\nmax_context: 4096\ndtype: fp16\n"
        "attention: {kind: gqa, heads: 16, kv_heads: 4, head_dim: 64}\nlayers: {count: 12}\n"
    )
    return path


def test_user_preset_dir_option_and_env(runner, kvcalc_app, tmp_path):
    user_preset(tmp_path / "mine")
    expected = 2 * 12 * 4 * 64 * 2 * 1024
    res = run(runner, kvcalc_app, "estimate", "my-model", "-c", "1k", "--json", "--preset-dir",
              str(tmp_path / "mine"))
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["total_bytes"] == expected
    res = run(runner, kvcalc_app, "estimate", "MY-MODEL", "-c", "1k", "--json",
              env={"KVCALC_PRESET_DIR": str(tmp_path / "mine")})
    assert json.loads(res.stdout)["total_bytes"] == expected
    listing = run(runner, kvcalc_app, "presets", "--json", env={"KVCALC_PRESET_DIR": str(tmp_path / "mine")})
    names = [p["name"] for p in json.loads(listing.stdout)]
    assert "my-model" in names and "llama-3-8b" in names


def test_missing_preset_dir(runner, kvcalc_app, tmp_path):
    res = run(runner, kvcalc_app, "estimate", "llama-3-8b", "--preset-dir", str(tmp_path / "gone"))
    assert res.exit_code == 1 and "gone" in res.stderr


# --- presets command -------------------------------------------------------------------


def test_presets_lists_every_file(runner, kvcalc_app):
    res = run(runner, kvcalc_app, "presets", "--json")
    assert res.exit_code == 0
    rows = json.loads(res.stdout)
    files = sorted(p.stem for p in Path(__file__).parent.parent.joinpath("model_presets").glob("*.yaml"))
    assert [r["name"] for r in rows] == files
    by_name = {r["name"]: r for r in rows}
    assert by_name["llama-3-70b"]["bytes_per_token"] == LLAMA3_70B_PER_TOKEN
    assert by_name["deepseek-v3"]["attention"] == "mla"
    table = run(runner, kvcalc_app, "presets")
    assert "llama-3-70b" in table.stdout and "327,680" in table.stdout


def test_presets_show(runner, kvcalc_app):
    res = run(runner, kvcalc_app, "presets", "show", "Gemma-3-27B")
    assert res.exit_code == 0
    assert "window: 1024" in res.stdout and "source:" in res.stdout
    data = json.loads(run(runner, kvcalc_app, "presets", "show", "gemma-3-27b", "--json").stdout)
    assert data["layers"]["pattern"] == ["local*5", "global"]
    assert run(runner, kvcalc_app, "presets", "show", "nope").exit_code == 1


def test_version(runner, kvcalc_app):
    import kvcalc

    res = run(runner, kvcalc_app, "--version")
    assert res.exit_code == 0 and res.stdout.strip() == f"kvcalc {kvcalc.__version__}"


def test_every_command_has_help(runner, kvcalc_app):
    import typer.main

    group = typer.main.get_command(kvcalc_app)
    for name, command in group.commands.items():
        assert command.help or command.short_help, name
        assert run(runner, kvcalc_app, name, "--help").exit_code == 0


def test_python_dash_m(tmp_path):
    res = subprocess.run([sys.executable, "-m", "kvcalc", "estimate", "gpt2", "--json"], cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    # GPT-2's float32 checkpoint is served in bf16 by default: 2 bytes
    assert json.loads(res.stdout)["bytes_per_token"] == 2 * 12 * 12 * 64 * 2


def test_public_api():
    import kvcalc

    spec = kvcalc.load_preset("Llama-3-70B")
    result = kvcalc.estimate(spec, context=8192)
    assert isinstance(result, kvcalc.Estimate)
    assert result.total_bytes == LLAMA3_70B_PER_TOKEN * 8192
    assert "llama-3-70b" in kvcalc.list_presets()


def test_unknown_name_that_is_a_local_folder_hints_at_dot_slash(runner, kvcalc_app, tmp_path, monkeypatch):
    (tmp_path / "mymodel").mkdir()
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(kvcalc_app, ["estimate", "mymodel"])
    assert result.exit_code == 1
    assert "pass it as ./mymodel" in result.stderr


def test_user_preset_must_be_named_like_its_file(runner, kvcalc_app, tmp_path):
    folder = tmp_path / "mine"
    path = user_preset(folder, "my-model")
    path.rename(folder / "other-name.yaml")
    result = runner.invoke(kvcalc_app, ["estimate", "other-name", "--preset-dir", str(folder)])
    assert result.exit_code == 1
    assert "does not match the file name" in result.stderr and "other-name.yaml" in result.stderr


def test_presets_group_option_reaches_show(runner, kvcalc_app, tmp_path):
    user_preset(tmp_path / "mine")
    result = runner.invoke(kvcalc_app, ["presets", "--preset-dir", str(tmp_path / "mine"), "show", "my-model"])
    assert result.exit_code == 0, result.output
    assert "name: my-model" in result.stdout


def test_expanded_mla_caption_says_expanded(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["estimate", "deepseek-v3", "-c", "4k", "--mla-layout", "expanded"])
    assert "mla expanded: 128 heads x 320" in result.stdout


def test_presets_table_keeps_the_source_at_80_columns():
    from rich.console import Console

    import kvcalc
    from kvcalc.estimate import estimate
    from kvcalc.render import presets_table

    specs = [kvcalc.load_preset(n) for n in ("llama-3-70b", "palm-540b")]
    console = Console(width=80, record=True)
    console.print(presets_table([(s, estimate(s, context=1).bytes_per_token) for s in specs]))
    lines = console.export_text().splitlines()
    assert all(len(line) <= 80 for line in lines)
    llama = next(line for line in lines if line.startswith(" llama-3-70b"))
    assert "327,680" in llama and "hf:meta-llama/" in llama
    assert next(line for line in lines if line.startswith(" palm-540b")).rstrip().endswith("…")
