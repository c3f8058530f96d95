"""compare, variants, estimate --as/--no-windows and plot, as a user runs them.

Expected numbers are derived by hand from ../shared/reference/model_facts.yaml:
  llama-3-70b: 80 layers, 64 heads, 8 KV heads, head_dim 128, bf16
  deepseek-v3: 61 layers, 128 heads, kv_lora_rank 512, rope 64, nope 128, v 128
  mistral-7b-v0.1: 32 layers, 8 KV heads x 128, window 4096 on every layer
  gemma-3-27b: 62 layers (52 local window 1024, 10 global), 16 KV heads x 128
"""

import csv
import io
import json
from pathlib import Path

import pytest

GiB = 2**30


def j(runner, app, *args):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- facts a user should be able to check ----------------------------------------------


def test_llama3_70b_mha_is_8x_gqa8_and_mqa_an_eighth(runner, kvcalc_app):
    rows = {r["variant"]: r for r in j(runner, kvcalc_app, "variants", "llama-3-70b", "-c", "8k", "--json")}
    gqa8 = 2 * 80 * 8 * 128 * 2
    assert rows["gqa-8"]["bytes_per_token"] == gqa8 and rows["gqa-8"]["is_actual"] is True
    assert rows["mha"]["bytes_per_token"] == 8 * gqa8 == 2 * 80 * 64 * 128 * 2
    assert rows["mqa"]["bytes_per_token"] * 8 == gqa8
    assert rows["mha"]["total_bytes"] == 8 * rows["gqa-8"]["total_bytes"]
    assert rows["gqa-8"]["ratio_vs_mha"] == 1 / 8
    assert [r for r in rows.values() if r["is_actual"]] == [rows["gqa-8"]]
    # every divisor of 64 heads strictly between 1 and 64
    assert [v for v in rows if v.startswith("gqa-")] == ["gqa-32", "gqa-16", "gqa-8", "gqa-4", "gqa-2"]


def test_deepseek_v3_expanded_is_about_71x_latent(runner, kvcalc_app):
    rows = {r["variant"]: r for r in j(runner, kvcalc_app, "variants", "deepseek-v3", "-c", "128k", "--json")}
    latent, expanded = rows["mla-latent"], rows["mla-expanded"]
    assert latent["bytes_per_token"] == 61 * (512 + 64) * 2 == 70_272
    assert expanded["bytes_per_token"] == 61 * 128 * (128 + 64 + 128) * 2 == 4_997_120
    assert round(expanded["total_bytes"] / latent["total_bytes"], 1) == 71.1
    assert latent["is_actual"] and not latent["hypothetical"]
    assert not expanded["is_actual"]
    assert rows["mha"]["hypothetical"]  # DeepSeek-V3 has no MHA form of its own


def test_mistral_window_saves_8x_at_32k(runner, kvcalc_app):
    windowed = j(runner, kvcalc_app, "estimate", "mistral-7b-v0.1", "-c", "32k", "--json")
    naive = j(runner, kvcalc_app, "estimate", "mistral-7b-v0.1", "-c", "32k", "--no-windows", "--json")
    per_token = 2 * 32 * 8 * 128 * 2
    assert windowed["total_bytes"] == per_token * 4096
    assert naive["total_bytes"] == per_token * 32768
    assert naive["total_bytes"] == 8 * windowed["total_bytes"]
    # the same attention without a window: mixtral-8x7b
    rows = j(runner, kvcalc_app, "compare", "mistral-7b-v0.1", "mixtral-8x7b", "-c", "32k", "--json")
    assert rows[1]["total_bytes"] == 8 * rows[0]["total_bytes"]


def test_gemma3_27b_at_128k(runner, kvcalc_app):
    per_layer_token = 2 * 16 * 128 * 2
    real = j(runner, kvcalc_app, "estimate", "gemma-3-27b", "-c", "128k", "--json")
    assert real["total_bytes"] == per_layer_token * (52 * 1024 + 10 * 131072)
    assert round(real["total_bytes"] / GiB, 1) == 10.4
    all_global = j(runner, kvcalc_app, "estimate", "gemma-3-27b", "-c", "128k", "--no-windows", "--json")
    assert all_global["total_bytes"] == per_layer_token * 62 * 131072 == 62 * GiB
    assert "windows ignored" in all_global["notes"][0]


# --- variants ---------------------------------------------------------------------------


def test_variants_groups_and_mla_sizing(runner, kvcalc_app):
    rows = j(runner, kvcalc_app, "variants", "llama-3-8b", "-c", "1", "--groups", "2,4", "--json")
    names = [r["variant"] for r in rows]
    assert names == ["mha", "gqa-8", "gqa-4", "gqa-2", "mqa", "mla-latent", "mla-expanded"]
    by = {r["variant"]: r for r in rows}
    # DeepSeek-V2 rule for a non-MLA model: rank 4 x 128 = 512, rope 128 / 2 = 64
    assert by["mla-latent"]["bytes_per_token"] == 32 * (512 + 64) * 2
    assert by["mla-latent"]["hypothetical"] is True
    assert by["mla-expanded"]["bytes_per_token"] == 32 * 32 * (128 + 64 + 128) * 2
    custom = {r["variant"]: r for r in j(runner, kvcalc_app, "variants", "llama-3-8b", "-c", "1",
                                           "--mla-rank", "256", "--rope-dim", "32", "--json")}
    assert custom["mla-latent"]["bytes_per_token"] == 32 * (256 + 32) * 2


def test_variants_keep_windows(runner, kvcalc_app):
    rows = {r["variant"]: r for r in j(runner, kvcalc_app, "variants", "mistral-7b-v0.1", "-c", "32k", "--json")}
    assert rows["mha"]["total_bytes"] == 2 * 32 * 32 * 128 * 2 * 4096


def test_variants_table(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["variants", "llama-3-70b", "-c", "8k"])
    assert result.exit_code == 0
    assert "gqa-8 (actual)" in result.stdout and "hypothetical" in result.stdout
    assert " 8x" in result.stdout  # MHA is 8 times the actual GQA-8


def test_bars_scale_with_bytes_and_narrow_terminals_drop_them():
    from rich.console import Console

    from kvcalc.render import bar, variants_table
    from kvcalc.sources.presets import preset_dirs
    from kvcalc.sources.resolve import resolve
    from kvcalc.variants import compare_variants

    assert bar(8, 8, width=16) == "█" * 16
    assert bar(1, 8, width=16) == "██"
    assert bar(1, 64, width=16) == "▎"  # a quarter cell, in eighths
    assert bar(0, 8) == ""
    spec = resolve("llama-3-70b", preset_dirs())
    table = variants_table(compare_variants(spec, context=8192), spec, "t")

    def text(width):
        console = Console(width=width, record=True)
        console.print(table)
        return console.export_text()

    assert "█" * 12 in text(200)  # mla-expanded, the largest, fills the bar
    medium = text(110)
    assert "21,474,836,480" in medium and "64 KV x 128" not in medium  # text goes before numbers
    narrow = text(70)
    assert "█" not in narrow and "2,621,440" in narrow  # the numbers stay
    assert max(len(line) for line in narrow.splitlines()[:12]) <= 70


def test_compare_table_keeps_every_number_at_80_columns():
    from rich.console import Console

    from kvcalc.compare import compare_rows
    from kvcalc.render import compare_table
    from kvcalc.sources.presets import preset_dirs
    from kvcalc.sources.resolve import resolve_many

    specs = resolve_many(["llama-3-70b", "deepseek-v3", "mistral-7b-v0.1"], preset_dirs())
    console = Console(width=80, record=True)
    console.print(compare_table(compare_rows(specs, [4096, 131072]), "t"))
    lines = console.export_text().splitlines()
    llama_128k = next(line for line in lines if "llama-3-70b" in line and "128K" in line)
    assert "40.00 GiB" in llama_128k and "42,949,672,960" in llama_128k  # numbers stay; text and bar go
    assert max(len(line) for line in lines) <= 80
    wide = Console(width=140, record=True)
    wide.print(compare_table(compare_rows(specs, [4096, 131072]), "t"))
    llama_128k = next(line for line in wide.export_text().splitlines() if "llama-3-70b" in line and "128K" in line)
    assert llama_128k.rstrip().endswith("█" * 12)  # the largest total fills its bar


@pytest.mark.parametrize("groups", ["3", "5,8", "0", ",", "x"])
def test_variants_bad_groups_exit_2(runner, kvcalc_app, groups):
    result = runner.invoke(kvcalc_app, ["variants", "llama-3-70b", "--groups", groups])
    assert result.exit_code == 2
    assert "--groups" in result.stderr


def test_estimate_as_variant(runner, kvcalc_app):
    data = j(runner, kvcalc_app, "estimate", "llama-3-70b", "-c", "8k", "--as", "mqa", "--json")
    assert data["bytes_per_token"] == 2 * 80 * 1 * 128 * 2
    assert data["notes"][0].startswith("what-if: llama-3-70b as mqa")
    data = j(runner, kvcalc_app, "estimate", "llama-3-70b", "-c", "8k", "--as", "mla-expanded", "--json")
    assert data["mla_layout"] == "expanded"
    assert data["bytes_per_token"] == 80 * 64 * (128 + 64 + 128) * 2
    assert runner.invoke(kvcalc_app, ["estimate", "llama-3-70b", "--as", "gqa-7"]).exit_code == 2
    assert runner.invoke(kvcalc_app, ["estimate", "llama-3-70b", "--as", "xyz"]).exit_code == 2


# --- compare ------------------------------------------------------------------------------


def test_compare_json_is_estimate_objects(runner, kvcalc_app):
    rows = j(runner, kvcalc_app, "compare", "llama-3-70b", "deepseek-v3", "-c", "4k,32k", "--json")
    single = j(runner, kvcalc_app, "estimate", "deepseek-v3", "-c", "32k", "--json")
    assert [(r["model"], r["context"]) for r in rows] == [
        ("llama-3-70b", 4096), ("llama-3-70b", 32768), ("deepseek-v3", 4096), ("deepseek-v3", 32768)]
    assert rows[3] == single


def test_compare_csv_exact_bytes(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["compare", "llama-3-70b", "gpt2", "-c", "1k,1M", "--csv"])
    assert result.exit_code == 0
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(table) == 4
    assert table[0]["model"] == "llama-3-70b" and int(table[0]["total_bytes"]) == 2 * 80 * 8 * 128 * 2 * 1024
    gpt2_1m = table[3]
    assert gpt2_1m["beyond_max_context"] == "true"
    assert int(gpt2_1m["total_bytes"]) == 2 * 12 * 12 * 64 * 2 * 1048576  # float32 GPT-2 served in bf16


def test_compare_table_marks_beyond_max(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["compare", "llama-3-8b", "-c", "8k,32k"])
    assert result.exit_code == 0
    assert "32K *" in result.stdout and "8K *" not in result.stdout
    assert "beyond the model's max context" in result.stdout


def test_compare_sort(runner, kvcalc_app):
    rows = j(runner, kvcalc_app, "compare", "gpt2", "llama-3-70b", "deepseek-v3", "-c", "8k",
             "--sort", "bytes-per-token", "--json")
    # 327,680 (llama-3-70b) > 70,272 (deepseek-v3) > gpt2's 2*12*12*64*2 = 36,864 (fp32, served in bf16)
    assert [r["model"] for r in rows] == ["llama-3-70b", "deepseek-v3", "gpt2"]
    rows = j(runner, kvcalc_app, "compare", "gpt2", "llama-3-70b", "deepseek-v3", "-c", "8k", "--kv-dtype", "fp32",
             "--sort", "bytes-per-token", "--json")
    # in fp32 for all: 2*80*8*128*4 = 655,360 > deepseek-v3's 61*(512+64)*4 = 140,544 > gpt2's 2*12*12*64*4 = 73,728
    assert [r["model"] for r in rows] == ["llama-3-70b", "deepseek-v3", "gpt2"]
    rows = j(runner, kvcalc_app, "compare", "llama-3-70b", "deepseek-v3", "gpt2", "-c", "8k",
             "--sort", "name", "--json")
    assert [r["model"] for r in rows] == ["deepseek-v3", "gpt2", "llama-3-70b"]
    assert runner.invoke(kvcalc_app, ["compare", "gpt2", "--sort", "colour"]).exit_code == 2


def test_compare_all(runner, kvcalc_app):
    rows = j(runner, kvcalc_app, "compare", "--all", "-c", "4k,1M", "--json")
    files = list(Path(__file__).parent.parent.joinpath("model_presets").glob("*.yaml"))
    assert len(rows) == 2 * len(files)


def test_compare_all_parses_each_file_once(runner, kvcalc_app, monkeypatch):
    import kvcalc.sources.presets as presets
    from kvcalc import validated_cache

    validated_cache.forget()  # this run's entries: earlier tests loaded the presets already
    seen = []
    original = presets.spec_from_data

    def counting(data, origin):
        seen.append(origin)
        return original(data, origin)

    monkeypatch.setattr(presets, "spec_from_data", counting)
    j(runner, kvcalc_app, "compare", "--all", "llama-3-8b", "-c", "4k,32k,128k,1M", "--json")
    assert len(seen) == len(set(seen)) == len(list(presets.bundled_dir().glob("*.yaml")))
    seen.clear()
    validated_cache.forget()  # this run's entries: earlier tests loaded the presets already
    j(runner, kvcalc_app, "compare", "gpt2", "llama-3-8b", "--json")
    assert sorted(Path(s).stem for s in seen) == ["gpt2", "llama-3-8b"]


def test_compare_reports_every_unknown_model(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["compare", "llama-3-8b", "lama-3", "gpt5", "mistrall-7b-v0.1"])
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "'lama-3'" in line and "'gpt5'" in line and "'mistrall-7b-v0.1'" in line
    assert "mistral-7b-v0.1" in line  # suggested


@pytest.mark.parametrize("args", [["-c", ","], ["-c", ""], ["-c", "4k,zero"], []])
def test_compare_usage_errors(runner, kvcalc_app, args):
    models = ["gpt2"] if args else []
    result = runner.invoke(kvcalc_app, ["compare", *models, *args])
    assert result.exit_code == 2


# --- plot ----------------------------------------------------------------------------------


def test_plot_terminal_chart(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["plot", "llama-3-70b", "mistral-7b-v0.1", "--context-range", "1k..1M",
                                         "--gpu-lines", "80GiB"])
    assert result.exit_code == 0, result.output
    assert "llama-3-70b" in result.stdout and "mistral-7b-v0.1" in result.stdout
    assert "80.00 GiB GPU" in result.stdout and "1M" in result.stdout


def test_plot_curves_show_window_plateau():
    from kvcalc.plot import curves
    from kvcalc.sources.presets import preset_dirs
    from kvcalc.sources.resolve import resolve

    (series,) = curves([resolve("mistral-7b-v0.1", preset_dirs())], 1024, 1 << 20)
    points = dict(zip(series.contexts, series.totals))
    per_token = 2 * 32 * 8 * 128 * 2
    assert points[4096] == points[4097] == points[1 << 20] == per_token * 4096
    assert points[1024] == per_token * 1024


@pytest.mark.parametrize("rng", ["1k", "1M..1k", "a..b", "1k..1k"])
def test_plot_bad_range(runner, kvcalc_app, rng):
    assert runner.invoke(kvcalc_app, ["plot", "gpt2", "--context-range", rng]).exit_code == 2


def test_plot_out_folder_missing(runner, kvcalc_app, tmp_path):
    target = tmp_path / "nope" / "chart.png"
    result = runner.invoke(kvcalc_app, ["plot", "gpt2", "--out", str(target)])
    assert result.exit_code == 1 and "does not exist" in result.stderr
    assert not target.parent.exists()


def test_plot_out_bad_suffix(runner, kvcalc_app, tmp_path):
    assert runner.invoke(kvcalc_app, ["plot", "gpt2", "--out", str(tmp_path / "c.jpg")]).exit_code == 2


def test_plot_out_unwritable(runner, kvcalc_app, tmp_path, monkeypatch):
    import os

    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    real_access = os.access
    # root may write anywhere, so ask the same question the way an ordinary user gets it answered
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == folder else real_access(p, mode))
    result = runner.invoke(kvcalc_app, ["plot", "gpt2", "--out", str(folder / "c.png")])
    assert result.exit_code == 1 and "not writable" in result.stderr


def test_plot_out_parent_is_a_file(runner, kvcalc_app, tmp_path):
    (tmp_path / "file").write_text("x")
    result = runner.invoke(kvcalc_app, ["plot", "gpt2", "--out", str(tmp_path / "file" / "c.png")])
    assert result.exit_code == 1


def test_plot_writes_png_and_svg(runner, kvcalc_app, tmp_path):
    import os

    pytest.importorskip("matplotlib")
    for name in ("chart.png", "chart.svg"):
        target = tmp_path / name
        result = runner.invoke(kvcalc_app, ["plot", "llama-3-70b", "gemma-3-27b", "-o", str(target),
                                             "--gpu-lines", "24GiB,80GiB"])
        assert result.exit_code == 0, result.output
        data = target.read_bytes()
        assert data.startswith(b"\x89PNG") if name.endswith(".png") else b"<svg" in data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chart.png", "chart.svg"]  # no temp files left
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "chart.png").stat().st_mode & 0o777 == 0o666 & ~umask


def test_plot_without_matplotlib_draws_in_terminal_and_says_how(runner, kvcalc_app, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    target = tmp_path / "chart.png"
    result = runner.invoke(kvcalc_app, ["plot", "llama-3-70b", "-o", str(target)])
    assert result.exit_code == 1
    assert "kvcalc[plot]" in result.stderr
    assert "llama-3-70b" in result.stdout  # the terminal chart
    assert not target.exists()


def test_compare_prints_what_a_config_import_inferred(runner, kvcalc_app):
    config = Path(__file__).parent / "fixtures" / "configs" / "falcon-7b"
    result = runner.invoke(kvcalc_app, ["compare", str(config), "falcon-7b", "-c", "2k"])
    assert result.exit_code == 0, result.output
    assert "note (falcon-7b): ignored: num_kv_heads 71" in result.stdout


def test_variants_json_for_an_encoder_is_still_json(runner, kvcalc_app):
    rows = j(runner, kvcalc_app, "variants", "bert-base", "--json")
    assert rows and all(r["total_bytes"] == 0 for r in rows)


def test_bad_values_in_lists_name_their_option(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["compare", "gpt2", "-c", "4k,0"])
    assert result.exit_code == 2 and "--context" in result.stderr
    result = runner.invoke(kvcalc_app, ["variants", "gpt2", "--groups", "abc"])
    assert result.exit_code == 2 and "'abc' is not a KV-head count" in result.stderr


def test_plot_without_matplotlib_says_how_to_get_an_image(runner, kvcalc_app, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = runner.invoke(kvcalc_app, ["plot", "gpt2"])
    assert result.exit_code == 0
    assert "pip install 'kvcalc[plot]'" in result.stdout


def test_plot_gpu_lines_take_gpu_names_and_count_weights(runner, kvcalc_app):
    from kvcalc.capacity.gpus import find_gpu
    from kvcalc.plot import parse_lines

    lines = parse_lines("24GiB,h100,8xH200")

    def usable(memory):  # vLLM's default 0.92 of the total, rounded up as its request_memory does
        return -(-memory * 92 // 100)

    assert [(line.bytes, line.gpu) for line in lines] == [
        (24 * 1024**3, False), (usable(find_gpu("h100").memory_bytes), True),
        (8 * usable(find_gpu("h200").memory_bytes), True)]
    result = runner.invoke(kvcalc_app, ["plot", "llama-3-8b", "-r", "1k..8k", "--gpu-lines", "l4"])
    assert result.exit_code == 0, result.output
    # 8,030,261,248 parameters x 2 bytes (bf16) = 14.96 GiB added to the KV curve
    assert "KV cache + weights" in result.stdout and "+14.96 GiB bf16 weights" in result.stdout
    result = runner.invoke(kvcalc_app, ["plot", "llama-3-8b", "--gpu-lines", "h1000"])
    assert result.exit_code == 2 and "neither a size" in result.output


def test_compare_table_says_each_convention_once_with_its_models(runner, kvcalc_app):
    result = runner.invoke(kvcalc_app, ["compare", "gpt2", "llama-3-8b", "-c", "1k,2k"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stdout.splitlines() if line.startswith("note (gpt2)")]
    # gpt2's float32, served in bf16
    assert len(notes) == 1 and "--kv-dtype fp32 gives the float32 figure" in notes[0]
    assert "note (llama-3-8b)" not in result.stdout
