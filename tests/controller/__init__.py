"""Tests of the controller runtime: Kubernetes adapter, reconciler, scheduler, watches,
leader election and ``canaryd run``, mostly end to end against the API emulator."""
