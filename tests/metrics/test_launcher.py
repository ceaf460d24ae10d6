"""The Prometheus launcher cleans up after itself: stopping removes everything it wrote (config,
log, web config) and keeps a data directory the caller gave it."""

from __future__ import annotations

from pathlib import Path

from meshsim.prometheus import PrometheusServer


def test_stop_removes_what_it_wrote_and_keeps_the_callers_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "tsdb"
    # An empty web config still makes the launcher write web.yml beside its own config.
    server = PrometheusServer(data_dir=data, web_config={}).start()
    root = server.config_path.parent
    assert (root / "web.yml").exists()
    assert server.query("vector(1)")
    server.stop()
    assert not root.exists()
    assert data.is_dir()
