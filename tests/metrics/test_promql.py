"""PromQL text: string literals, batched Istio queries, and safe MetricTemplate rendering.

Pure tests (no server). That a rendered hostile value really cannot inject PromQL is also
checked against the real Prometheus in ``test_provider_prometheus.py``."""

import pytest

from canaryd.adapters.prometheus.promql import (
    TemplateError,
    counts_query,
    duration,
    error_rate_parts,
    latency_parts,
    raw_query,
    render_template,
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


def test_counts_query_has_both_instants_and_resets_per_workload():
    parts = error_rate_parts(namespace="shop", reporter="destination", error_codes="5..")
    q = counts_query(parts, window_seconds=60, lookback_seconds=300)
    sel = 'istio_requests_total{reporter="destination",destination_workload_namespace="shop"}'
    # The end: last sample in [start - lookback, end]; the start: last sample in
    # [start - lookback, start]; no increase(), no rate().
    assert f"sum by (destination_workload) (last_over_time({sel}[360s]))" in q
    assert f"sum by (destination_workload) (last_over_time({sel}[300s] offset 60s))" in q
    assert f"sum by (destination_workload) (resets({sel}[360s])) > 0" in q
    assert "increase(" not in q and "rate(" not in q
    for tag in ("requests:end", "requests:start", "errors:end", "errors:start", "resets"):
        assert f'"canaryd_part", "{tag}", "", ""' in q


def test_errors_part_unions_http_codes_and_grpc_status():
    _, errors = error_rate_parts(namespace="shop", reporter="source", error_codes="5..|429")
    http, grpc = errors.selectors
    assert 'response_code=~"5..|429"' in http and 'reporter="source"' in http
    assert 'response_code!~"5..|429",grpc_response_status!~"|0"' in grpc


def test_latency_part_groups_by_le():
    (buckets,) = latency_parts(namespace="shop", reporter="destination")
    q = counts_query((buckets,), window_seconds=120, lookback_seconds=300)
    assert "sum by (destination_workload, le)" in q
    assert "istio_request_duration_milliseconds_bucket" in q and "[420s]" in q


def test_raw_query_selects_only_the_named_workloads_literally():
    (buckets,) = latency_parts(namespace="shop", reporter="destination")
    q = raw_query(buckets.selectors[0], workloads=["a.b", "c-d"], range_seconds=90.5)
    assert q.endswith(',destination_workload=~"a\\\\.b|c\\\\-d"}[90500ms]')


def test_hostile_namespace_stays_inside_its_literal():
    (requests, _) = error_rate_parts(
        namespace='x"} or vector(1) or up{a="', reporter="destination", error_codes="5.."
    )
    assert (
        'destination_workload_namespace="x\\"} or vector(1) or up{a=\\""}'
        in (requests.selectors[0])
    )


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


@pytest.mark.parametrize("value", ["abc\n", "1m\n", "abc\n# x", "\nabc"])
def test_render_refuses_a_newline_outside_strings(value):
    # Python's "$" matches before a trailing newline: an anchored re.match let "abc\n" through.
    with pytest.raises(TemplateError, match="outside a string literal"):
        render_template("rate(x[{{ v }}])", {"v": value})


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
