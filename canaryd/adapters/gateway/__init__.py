"""Gateway API traffic routing: pure HTTPRoute computations (:mod:`.routes`) and the router that
applies them through the project's one Kubernetes transport (:mod:`.router`)."""

from canaryd.adapters.gateway.router import GatewayRouter

__all__ = ["GatewayRouter"]
