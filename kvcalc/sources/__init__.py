"""Where a model spec comes from: see ``resolve`` for the order and one module per source."""
