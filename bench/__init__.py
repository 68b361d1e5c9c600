"""Benchmarks of repfs side by side with its peers; run `python -m bench` (see README.md)."""
