"""Istio traffic routing: pure VirtualService computations (:mod:`.routes`) and the router
that applies them through the official Kubernetes client (:mod:`.router`)."""

from canaryd.adapters.istio.router import IstioRouter

__all__ = ["IstioRouter"]
