"""The floor for kvcalc's start-up: the same four libraries doing the least useful work.

A Typer app with two commands that validates one small pydantic model from a YAML
string and prints a one-row Rich table. kvcalc's cold start is measured against this.
"""

import typer
import yaml
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False)

DOC = "name: toy\nlayers: 80\nkv_heads: 8\nhead_dim: 128\n"


class Toy(BaseModel):
    name: str
    layers: int
    kv_heads: int
    head_dim: int


@app.command()
def estimate(context: int = 8192) -> None:
    toy = Toy.model_validate(yaml.safe_load(DOC))
    table = Table("model", "bytes")
    table.add_row(toy.name, f"{2 * toy.layers * toy.kv_heads * toy.head_dim * 2 * context:,}")
    Console().print(table)


@app.command()
def other() -> None:
    pass


if __name__ == "__main__":
    app()
