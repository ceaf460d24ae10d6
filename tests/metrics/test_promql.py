"""PromQL text: string literals, batched Istio queries, and safe MetricTemplate rendering.

Pure tests (no server). That a rendered hostile value really cannot inject PromQL is also
checked against the real Prometheus in ``test_provider_prometheus.py``."""

import pytest

from canaryd.adapters.prometheus.promql import (
    TemplateError,
    duration,
    errors_query,
    latency_query,
    render_template,
    requests_query,
    string_literal,
    template_variables,
)


def test_string_literal_escapes_quotes_backslashes_and_newlines():
    assert string_literal('a"b') == r'"a\"b"'
    assert string_literal("a\\b") == r'"a\\b"'
    assert string_literal("a\nb") == r'"a\nb"'
    assert string_literal('x\\"} or vector(1) #') == r'"x\\\"} or vector(1) #"'


@pytest.mark.parametrize(
    ("seconds", "text"), [(60, "60s"), (1, "1s"), (0.5, "500ms"), (90.25, "90250ms")]
)
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_duration_rejects_non_positive():
    with pytest.raises(ValueError, match="positive"):
        duration(0)


def test_requests_query_is_batched_per_namespace():
    q = requests_query(namespace="shop", reporter="destination", window_seconds=60)
    assert q == (
        "sum by (destination_workload) (increase(istio_requests_total"
        '{reporter="destination",destination_workload_namespace="shop"}[60s]))'
    )


def test_errors_query_unions_http_codes_and_grpc_status():
    q = errors_query(namespace="shop", reporter="source", window_seconds=30, error_codes="5..|429")
    assert 'response_code=~"5..|429"' in q
    assert 'response_code!~"5..|429",grpc_response_status!~"|0"' in q
    assert q.startswith("sum by (destination_workload) (") and " or " in q
    assert 'reporter="source"' in q


def test_latency_query_groups_by_le():
    q = latency_query(namespace="shop", reporter="destination", window_seconds=120)
    assert "sum by (destination_workload, le)" in q
    assert "istio_request_duration_milliseconds_bucket" in q and "[120s]" in q


def test_hostile_namespace_stays_inside_its_literal():
    q = requests_query(
        namespace='x"} or vector(1) or up{a="', reporter="destination", window_seconds=60
    )
    assert 'destination_workload_namespace="x\\"} or vector(1) or up{a=\\""}' in q


def test_render_substitutes_builtin_and_user_variables():
    out = render_template(
        'sum(rate(http_requests_total{namespace="{{ namespace }}", pod=~"{{workload}}-.*",'
        " path='{{ path }}'}[{{ interval }}]))",
        {"namespace": "shop", "workload": "podinfo", "interval": "1m", "path": "/api"},
    )
    assert out == (
        'sum(rate(http_requests_total{namespace="shop", pod=~"podinfo-.*", path=\'/api\'}[1m]))'
    )


def test_render_escapes_for_the_quote_in_use():
    hostile = "a\"b'c\\d"
    dq = render_template('x{l="{{ v }}"}', {"v": hostile})
    sq = render_template("x{l='{{ v }}'}", {"v": hostile})
    assert dq == 'x{l="a\\"b\'c\\\\d"}'
    assert sq == "x{l='a\"b\\'c\\\\d'}"


def test_render_names_the_unknown_variable():
    with pytest.raises(TemplateError, match="unknown template variable 'tenant'"):
        render_template('up{t="{{ tenant }}"}', {"namespace": "a"})


def test_render_refuses_unsafe_values_outside_strings():
    with pytest.raises(TemplateError, match="'interval' is used outside a string literal"):
        render_template("rate(x[{{ interval }}])", {"interval": "1m]) or vector(1"})
    assert render_template(
        "rate(x[{{ interval }}]) > {{ limit }}", {"interval": "90s", "limit": "0.5"}
    ) == ("rate(x[90s]) > 0.5")


def test_render_refuses_backtick_in_raw_string():
    with pytest.raises(TemplateError, match="backtick"):
        render_template("x{l=`{{ v }}`}", {"v": "a`b"})
    assert render_template("x{l=`{{ v }}`}", {"v": 'a"b'}) == 'x{l=`a"b`}'


def test_escaped_quote_in_template_does_not_end_the_string():
    # The \" inside the literal must not flip the scanner out of the string.
    out = render_template('x{l="pre\\"{{ v }}"}', {"v": 'q"'})
    assert out == 'x{l="pre\\"q\\""}'


def test_placeholders_in_comments_are_left_alone():
    out = render_template('up # uses {{ nothing }}\n+ x{a="{{ v }}"}', {"v": "1"})
    assert out == 'up # uses {{ nothing }}\n+ x{a="1"}'


def test_template_variables_in_order():
    assert template_variables("{{ a }} {{b}} {{ a }}") == ["a", "b"]
