"""Tests of canaryd's voice: Slack, Kubernetes Events, telemetry, rules and dashboards."""
