"""The atomic writer: nothing half-written, nothing replaced without --force."""

import pytest

from kvcalc.errors import KvcalcError
from kvcalc.files import write_atomically, write_text


def test_write_text_and_refuse_existing(tmp_path):
    target = tmp_path / "model.yaml"
    write_text(target, "a: 1\n")
    assert target.read_text() == "a: 1\n"
    with pytest.raises(KvcalcError, match="already exists"):
        write_text(target, "a: 2\n")
    write_text(target, "a: 2\n", force=True)
    assert target.read_text() == "a: 2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["model.yaml"]  # no temporary files left


def test_a_file_that_appears_after_the_check_is_not_replaced(tmp_path):
    target = tmp_path / "model.yaml"

    def write(tmp):
        target.write_text("someone else's\n")  # appears between the check and the move
        with open(tmp, "w") as handle:
            handle.write("ours\n")

    with pytest.raises(KvcalcError, match="already exists"):
        write_atomically(target, write, force=False)
    assert target.read_text() == "someone else's\n"
    assert [p.name for p in tmp_path.iterdir()] == ["model.yaml"]


def test_a_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "chart.png"

    def write(tmp):
        raise OSError(28, "No space left on device")

    with pytest.raises(KvcalcError, match="No space left"):
        write_atomically(target, write)
    assert list(tmp_path.iterdir()) == []
