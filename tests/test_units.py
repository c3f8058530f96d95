import pytest

from kvcalc.units import format_bytes, format_tokens, parse_bytes, parse_tokens


@pytest.mark.parametrize(
    "text, tokens",
    [("8192", 8192), ("8k", 8192), ("8K", 8192), ("128K", 131072), ("1M", 1048576),
     ("1m", 1048576), ("1.5k", 1536), (" 32k ", 32768), ("1", 1)],
)
def test_parse_tokens(text, tokens):
    assert parse_tokens(text) == tokens


@pytest.mark.parametrize("text", ["0", "-5", "abc", "8kb", "1.0001k", "", "0k", "1e6"])
def test_parse_tokens_rejects(text):
    with pytest.raises(ValueError):
        parse_tokens(text)


@pytest.mark.parametrize(
    "n, text",
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.00 KiB"), (1536, "1.50 KiB"),
     (1342177280, "1.25 GiB"), (40 * 2**30, "40.00 GiB")],
)
def test_format_bytes_is_iec(n, text):
    assert format_bytes(n) == text


def test_format_tokens():
    assert [format_tokens(n) for n in (131072, 1048576, 5000, 4096)] == ["128K", "1M", "5000", "4K"]


@pytest.mark.parametrize(
    "text, n", [("24GiB", 24 * 2**30), ("80GB", 80 * 10**9), ("80 GiB", 80 * 2**30), ("141G", 141 * 2**30)]
)
def test_parse_bytes(text, n):
    assert parse_bytes(text) == n
