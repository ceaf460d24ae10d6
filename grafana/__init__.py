"""canaryd's Grafana dashboards as code (grafana-foundation-sdk 11.6).

``python -m grafana.build`` writes ``grafana/dashboards/*.json`` and the provisioning manifests
in ``grafana/provisioning/``; a test fails when the committed files are not what the code builds.
"""
