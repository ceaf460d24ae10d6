"""Command-line entry points (top layer: may wire everything together)."""
