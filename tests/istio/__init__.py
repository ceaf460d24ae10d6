"""Tests of the Istio traffic router: pure VirtualService computations and I/O on kubeemu."""
