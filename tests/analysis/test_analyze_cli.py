"""``canaryd analyze`` (canaryd.cli.analyze): the documented example file, one JSON object or
JSON Lines, per-line error messages naming the field with the other lines still judged, the
exit code, file/stdin/output handling through the argument parser."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from canaryd.cli import analyze

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "judge-example.jsonl"


def judge_text(text: str) -> tuple[int, list[dict], str]:
    out, err = io.StringIO(), io.StringIO()
    code = analyze.run(text, out, err)
    return code, [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


def interval(c_req=1000, c_err=10, s_req=9000, s_err=45, **extra):
    return {
        "weight": 10,
        "canary": {"requests": c_req, "errors": c_err, **extra},
        "stable": {"requests": s_req, "errors": s_err},
    }


def test_documented_example_file_decisions():
    code, results, err = judge_text(EXAMPLE.read_text())
    assert code == 0 and err == ""
    by_name = {r["name"]: r for r in results}
    assert by_name["errors-doubled"]["decision"] == "rollback"
    assert by_name["tail-latency"]["decision"] == "rollback"
    assert "p99" in by_name["tail-latency"]["reason"]
    assert by_name["good-1000rps"]["decision"] == "promote"
    for r in results:
        assert isinstance(r["interval"], int)
        assert {m["name"] for m in r["metrics"]} >= {"error-rate"}
        assert all("history" not in m for m in r["metrics"])


def test_single_json_object_spanning_lines():
    doc = {"intervals": [interval()] * 3}
    code, results, _ = judge_text(json.dumps(doc, indent=2))
    assert code == 0 and len(results) == 1
    assert results[0]["decision"] == "inconclusive" and results[0]["interval"] is None
    # Without an analysis and without latency buckets only the error rate is judged.
    assert [m["name"] for m in results[0]["metrics"]] == ["error-rate"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"intervals": [{"weight": 5, "stable": {"requests": 1, "errors": 0}}]},
            "intervals[0].canary: missing",
        ),
        (
            {"intervals": [interval(c_req=-3)]},
            "intervals[0].canary.requests: must be a finite number >= 0",
        ),
        (
            {"intervals": [interval(c_err=20, c_req=10)]},
            "intervals[0].canary.errors: 20 exceeds requests 10",
        ),
        (
            {"intervals": [{**interval(), "canary": {"requests": 5}}]},
            "intervals[0].canary.errors: missing",
        ),
        ({"intervals": [{**interval(), "metrics": {"nope": {}}}]}, "unknown metric 'nope'"),
        (
            {"analysis": {"metrics": [{"name": "x", "kind": "cpu"}]}, "intervals": []},
            "analysis.metrics.0.kind",
        ),
        ({"intervals": [interval(latency={"10": 5, "5": 9})]}, "must be cumulative"),
        ({"intervals": [interval(latency={"fast": 5})]}, "bucket key 'fast'"),
        ({"intervals": [{**interval(), "weight": 140}]}, "intervals[0].weight"),
        ({"intervals": "many"}, "intervals: missing or not a list"),
        ({"intervals": [], "extra": 1}, "unknown field(s) ['extra']"),
    ],
)
def test_bad_line_is_named_and_other_lines_are_still_judged(doc, message):
    good = json.dumps({"intervals": [interval()]})
    text = "\n".join([good, json.dumps(doc), good])
    code, results, err = judge_text(text)
    assert code == 1
    assert [r.get("decision") for r in results] == ["inconclusive", None, "inconclusive"]
    assert results[1]["line"] == 2 and message in results[1]["error"]
    assert err.startswith("line 2: ") and message in err


def test_invalid_json_line():
    code, results, err = judge_text('{"intervals": []}\n{"intervals": [\n')
    assert code == 1 and "invalid JSON" in results[1]["error"] and "line 2" in err


def test_template_value_metric_with_thresholds():
    analysis = {
        "metrics": [
            {
                "name": "p95",
                "kind": "template",
                "templateRef": {"name": "t"},
                "thresholdRange": {"max": 300},
            }
        ],
        "judge": "thresholds",
    }
    doc = {
        "analysis": analysis,
        "intervals": [
            {
                **interval(),
                "metrics": {"p95": {"canary": {"value": 250}, "stable": {"value": 200}}},
            },
            {
                **interval(),
                "metrics": {"p95": {"canary": {"value": 450}, "stable": {"value": 200}}},
            },
        ],
    }
    code, results, _ = judge_text(json.dumps(doc))
    assert code == 0
    assert results[0]["decision"] == "rollback" and results[0]["interval"] == 1
    assert "canary 450 outside" in results[0]["reason"]


def test_argument_parser_file_and_output(tmp_path, monkeypatch):
    parser = argparse.ArgumentParser()
    analyze.configure(parser)
    out = tmp_path / "out.jsonl"
    code = analyze.main(parser.parse_args([str(EXAMPLE), "-o", str(out), "--summary"]))
    assert code == 0
    assert len(out.read_text().splitlines()) == 3
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps({"intervals": [interval()]})))
    captured = io.StringIO()
    monkeypatch.setattr(sys, "stdout", captured)
    assert analyze.main(parser.parse_args([])) == 0
    assert json.loads(captured.getvalue())["decision"] == "inconclusive"


# ---- hostile input (issue 9 item 10): a message per bad line, never a traceback -------------


def nested(depth: int) -> str:
    return '{"intervals": [' + "[" * depth + "]" * depth + "]}"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            '{"intervals": [{"canary": {"requests": 1' + "0" * 400 + ', "errors": 0},'
            ' "stable": {"requests": 1, "errors": 0}}]}',
            "intervals[0].canary.requests: number out of range, got an integer of about 401 digits",
        ),
        (
            '{"intervals": [{"weight": 1' + "0" * 5000 + ', "canary": {"requests": 1, "errors": 0},'
            ' "stable": {"requests": 1, "errors": 0}}]}',
            "invalid JSON: Exceeds the limit",
        ),
        (nested(50_000), "invalid JSON: nested too deeply"),
        (
            json.dumps({"intervals": [interval(latency={"+Inf": 1000})]}),
            "intervals[0].canary.latency: needs at least one finite bucket (le in ms) besides +Inf",
        ),
        (
            json.dumps({"intervals": [interval(value=10**400)]}),
            "intervals[0].canary.value: number out of range",
        ),
        (
            json.dumps({"intervals": [{**interval(), "weight": 10**400}]}),
            "intervals[0].weight: expected a number between 0 and 100, got an integer of about",
        ),
    ],
)
def test_hostile_lines_get_a_message_and_the_others_are_judged(line, message):
    good = json.dumps({"intervals": [interval()]})
    code, results, err = judge_text("\n".join([good, line, good]))
    assert code == 1
    assert [r.get("decision") for r in results] == ["inconclusive", None, "inconclusive"]
    assert results[1]["line"] == 2 and message in results[1]["error"], results[1]
    assert err.startswith("line 2: ") and message in err
    assert len(err) < 1000


def test_non_utf8_line_through_the_command(tmp_path):
    """The file is read as bytes: one line that is not UTF-8 is that line's error."""
    good = json.dumps({"intervals": [interval()]}).encode()
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join([good, b'{"name": "caf\xe9", "intervals": []}', good]))
    out = tmp_path / "out.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "canaryd", "analyze", str(path), "-o", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("line 2: invalid input: not UTF-8 (byte 14 of the line)")
    results = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r.get("decision") for r in results] == ["inconclusive", None, "inconclusive"]
