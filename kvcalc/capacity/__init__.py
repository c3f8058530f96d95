"""Capacity planning: parameter counts, the GPU catalog, engine rules, and `fit`. No torch."""
