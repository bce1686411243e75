"""Benchmarks with committed results (bench/results/). Run with `python -m bench.<name>`."""
