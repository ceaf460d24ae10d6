"""Benchmarks of canaryd (judge quality; see ``python benchmarks/judge_quality.py``)."""
