import os

import pytest

# Pin the terminal so Rich output is the same everywhere (no colour, fixed width).
os.environ["COLUMNS"] = "120"
os.environ["NO_COLOR"] = "1"
os.environ.pop("KVCALC_PRESET_DIR", None)
# Tests measure the code, not a cache an earlier run filled (test_validated_cache.py turns it on).
os.environ["KVCALC_CACHE_DIR"] = "off"


@pytest.fixture
def runner():
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture
def kvcalc_app():
    from kvcalc.cli import app

    return app
