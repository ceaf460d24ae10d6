"""Mesh simulator: plays Istio sidecars and serves Istio's standard metrics (test rig, demo).

Public API::

    from meshsim import MeshSimulator, MeshApp, KubeRoutes, StaticRoutes, VersionProfile
    from meshsim.prometheus import PrometheusServer

See :mod:`meshsim.simulator` for the two modes (stepping and live), :mod:`meshsim.traffic` for
the behaviour model, :mod:`meshsim.istio` for the metric names and labels.
"""

from meshsim.istio import IstioMetrics, OpenMetricsRecorder, Pod, le_label
from meshsim.routes import KubeRoutes, MeshApp, Route, StaticRoutes
from meshsim.rules import Segment
from meshsim.simulator import MeshSimulator, StepStats
from meshsim.traffic import ISTIO_BUCKETS_MS, Incident, TrafficShape, VersionProfile

__all__ = [
    "ISTIO_BUCKETS_MS",
    "Incident",
    "IstioMetrics",
    "KubeRoutes",
    "MeshApp",
    "MeshSimulator",
    "OpenMetricsRecorder",
    "Pod",
    "Route",
    "Segment",
    "StaticRoutes",
    "StepStats",
    "TrafficShape",
    "VersionProfile",
    "le_label",
]
