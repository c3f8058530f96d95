"""The whole kvcalc command line as one Typer app, every command registered.

The commands live in ``kvcalc.commands`` (one module each); ``kvcalc`` itself starts through
``kvcalc.commands.app.main``, which registers only the command a run names. Import ``app``
from here to drive every command from Python or a test (``typer.testing.CliRunner``).
"""

from kvcalc.commands.app import main, register

app = register()

__all__ = ["app", "main"]
