"""Connection options against a REAL Prometheus: TLS with a custom CA and basic auth
(Prometheus's own ``--web.config.file``), and bearer token + tenant headers as seen by a
recording reverse proxy in front of Prometheus (Prometheus 2.42 cannot check bearer tokens)."""

import subprocess
import threading
import urllib.request
import warnings
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from canaryd.adapters.prometheus import PrometheusSettings, ProviderCache
from canaryd.api.models import MetricSpec, MetricTemplateSpec, PrometheusSpec
from canaryd.core.types import MetricQuery

pytestmark = pytest.mark.prometheus

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # bcrypt hashes for Prometheus's basic_auth_users (libxcrypt)

QUERY = MetricQuery(
    namespace="shop",
    rollout="podinfo",
    canary_workload="podinfo",
    primary_workload="podinfo-primary",
    metric=MetricSpec(name="error-rate"),
    template=None,
    window_seconds=60,
    at=datetime.now(UTC),
)


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


@pytest.fixture
def tls(tmp_path):
    """A throw-away CA and a server certificate for 127.0.0.1 signed by it."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
            "-subj", "/CN=canaryd-test-ca", cwd=tmp_path)  # fmt: skip
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
            cwd=tmp_path)  # fmt: skip
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "san.ext",
            cwd=tmp_path)  # fmt: skip
    return tmp_path


@pytest.fixture
def secured(prometheus_factory, tls):
    hashed = crypt.crypt("s3cret", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    web = {
        "tls_server_config": {
            "cert_file": str(tls / "server.pem"),
            "key_file": str(tls / "server.key"),
        },
        "basic_auth_users": {"canaryd": hashed},
    }
    prom = prometheus_factory(web_config=web, client_auth=("canaryd", "s3cret"))
    return prom, (tls / "ca.pem").read_text()


def test_tls_with_custom_ca_and_basic_auth(secured):
    prom, ca_pem = secured
    assert prom.url.startswith("https://")
    cache = ProviderCache(PrometheusSettings(address="http://unused:9090"))
    spec = PrometheusSpec(address=prom.url)
    good = cache.for_spec(spec, basic_auth="canaryd:s3cret", ca_pem=ca_pem)
    assert good.is_online()
    (reading,) = good.read([QUERY])
    assert reading.no_data and reading.error is None  # answered: no series yet
    wrong = cache.for_spec(spec, basic_auth="canaryd:nope", ca_pem=ca_pem)
    (reading,) = wrong.read([QUERY])
    assert "401" in reading.error
    no_ca = cache.for_spec(spec, basic_auth="canaryd:s3cret")
    (reading,) = no_ca.read([QUERY])
    assert "CERTIFICATE_VERIFY_FAILED" in reading.error
    cache.close()


class RecordingProxy:
    """Forwards GET requests to ``upstream`` and remembers the headers it saw."""

    def __init__(self, upstream):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append((self.path, dict(self.headers)))
                with urllib.request.urlopen(upstream + self.path, timeout=10) as resp:
                    body = resp.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def proxy(prometheus):
    p = RecordingProxy(prometheus.url)
    yield p
    p.close()


def test_bearer_token_and_tenant_header_are_sent(proxy):
    cache = ProviderCache(PrometheusSettings(address=proxy.url, headers=(("X-Global", "1"),)))
    spec = PrometheusSpec(headers={"X-Scope-OrgID": "team-a"})
    provider = cache.for_spec(spec, bearer_token="t0ken")
    (reading,) = provider.read([QUERY])
    assert reading.error is None
    path, headers = proxy.seen[-1]
    assert path.startswith("/api/v1/query?")
    assert headers["X-Scope-OrgID"] == "team-a"
    assert headers["X-Global"] == "1"
    assert headers["Authorization"] == "Bearer t0ken"
    # The global provider sends neither the tenant header nor the token.
    cache.get().read([QUERY])
    _, headers = proxy.seen[-1]
    assert "X-Scope-OrgID" not in headers and "Authorization" not in headers
    cache.close()


@pytest.fixture
def other(prometheus):
    p = RecordingProxy(prometheus.url)
    yield p
    p.close()


def test_global_credentials_go_only_to_the_global_address(proxy, other):
    """Issue 9 item 7: a Rollout that named any address received the controller's bearer token
    and tenant headers. Now the global credentials reach only the global address; another
    address gets only what the Rollout brings (Secrets from its own namespace)."""
    cache = ProviderCache(
        PrometheusSettings(
            address=proxy.url, bearer_token="global-t0ken", headers=(("X-Scope-OrgID", "ops"),)
        )
    )
    # A Rollout-specific address without credentials of its own: nothing of the controller's.
    (reading,) = cache.for_spec(PrometheusSpec(address=other.url)).read([QUERY])
    assert reading.error is None
    _, headers = other.seen[-1]
    assert "Authorization" not in headers and "X-Scope-OrgID" not in headers
    # With its own Secret and header: exactly those.
    spec = PrometheusSpec(address=other.url, headers={"X-Scope-OrgID": "team-a"})
    (reading,) = cache.for_spec(spec, bearer_token="team-t0ken").read([QUERY])
    assert reading.error is None
    _, headers = other.seen[-1]
    assert headers["Authorization"] == "Bearer team-t0ken"
    assert headers["X-Scope-OrgID"] == "team-a"
    # A MetricTemplate's own address, queried through the global provider: no global token.
    template_query = MetricQuery(
        namespace="shop",
        rollout="podinfo",
        canary_workload="podinfo",
        primary_workload="podinfo-primary",
        metric=MetricSpec(name="up", kind="template", templateRef={"name": "up"}),
        template=MetricTemplateSpec(
            query="vector(1)", prometheus=PrometheusSpec(address=other.url)
        ),
        window_seconds=60,
        at=datetime.now(UTC),
    )
    before = len(other.seen)
    (reading,) = cache.get().read([template_query])
    assert reading.error is None, reading.error
    assert len(other.seen) > before
    for _, headers in other.seen[before:]:
        assert "Authorization" not in headers and "X-Scope-OrgID" not in headers
    # The global address itself (written with a trailing slash) keeps the global credentials.
    (reading,) = cache.for_spec(PrometheusSpec(address=proxy.url + "/")).read([QUERY])
    assert reading.error is None
    _, headers = proxy.seen[-1]
    assert headers["Authorization"] == "Bearer global-t0ken"
    assert headers["X-Scope-OrgID"] == "ops"
    cache.close()
