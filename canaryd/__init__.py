"""canaryd: progressive delivery for Kubernetes and Istio with an anytime-valid judge."""

__version__ = "0.1.0"
