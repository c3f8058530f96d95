"""render.Grid: the fixed-width table drawn as Rich segments (no Text laid out per row)."""

from rich.console import Console
from rich.text import Text

from kvcalc.render import Grid


def draw(grid: Grid, width: int, color: bool) -> str:
    console = Console(width=width, record=True, force_terminal=color, color_system="truecolor" if color else None,
                      file=open("/dev/null", "w"))
    console.print(grid)
    return console.export_text(styles=False)


GRID = Grid("title", ["name", "n", "", "from"],
            [["a", "1", Text("██", style="cyan"), "x"], ["bb", "22", Text("", style="cyan"), "yy"]],
            right={"n"})


def test_a_grid_reads_the_same_with_and_without_colour():
    plain = draw(GRID, 80, color=False)
    assert plain == draw(GRID, 80, color=True)
    assert plain.splitlines() == [
        "title",
        " name    n        from",  # the empty header of the bar column takes its width, nothing more
        " " + "─" * 21,
        " a       1   ██   x",
        " bb     22        yy",
    ]


def test_styles_land_on_their_cells():
    console = Console(width=80, force_terminal=True, color_system="truecolor", file=open("/dev/null", "w"))
    segments = [s for s in console.render(GRID) if s.text.strip()]
    styled = {s.text: str(s.style) for s in segments if s.style}
    assert styled["name"] == "bold" and styled["██"] == "cyan" and styled[" " + "─" * 21] == "dim"
    assert "".join(s.text for s in console.render(GRID)).splitlines()[3] == " a       1   ██   x"


def test_a_grid_wider_than_the_terminal_wraps_rather_than_hides():
    wide = Grid("t", ["k", "v"], [["key", "9" * 50]], right={"v"})
    text = draw(wide, 30, color=False)
    assert "9" * 20 in text and text.count("9") == 50
