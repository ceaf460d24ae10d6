"""Tests of what ships: the operator CLI, ``canaryd lint``, the manifests, RBAC and the image."""
