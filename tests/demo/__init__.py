"""Tests of ``canaryd demo``: its terminal output, its pieces, and the whole demo end to end."""
