"""Tests of the Kubernetes API server emulator (kubeemu), through the official client."""
