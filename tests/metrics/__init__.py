"""Metrics: the Prometheus provider, MetricTemplates, the mesh simulator, the Prometheus rig."""
