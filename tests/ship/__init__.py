"""Tests of what ships: the operator CLI (test_cli, test_output), ``canaryd lint`` (test_lint),
the manifests (test_manifests), RBAC derived from the controller's real calls (test_rbac), the
example application run by the real controller (test_example) and the image (test_image)."""
