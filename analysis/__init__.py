"""Canary-vs-stable statistics. Pure: numpy and scipy only, no I/O."""
