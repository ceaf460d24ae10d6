"""The transport's JSON (orjson, the json module for what orjson refuses) reads and writes the
same values as the json module does, the reference here."""

from __future__ import annotations

import json
import math
import random

import pytest

from canaryd.adapters.transport import decode, encode


def test_same_values_as_the_json_module() -> None:
    rnd = random.Random(3)
    body = {
        "status": {
            "state": {"kind": "counts/2", "values": [rnd.uniform(-1e6, 1e6) for _ in range(500)]},
            "tiny": [5e-324, 1e-310, -0.0, 1.7976931348623157e308, 0.1, 1 / 3],
            "ints": [0, -1, 2**63 - 1, -(2**63)],
            "text": ["", "ünïcödé", "\u2028", 'quote " and \\ slash', "\x00"],
            "nested": {"a": [None, True, False, {"b": []}]},
        }
    }
    encoded = encode(body)
    assert json.loads(encoded) == body
    assert decode(encoded) == body
    assert decode(json.dumps(body).encode()) == body
    for value in body["status"]["tiny"]:  # floats round-trip bit for bit
        assert math.copysign(1, decode(encode(value))) == math.copysign(1, value)


def test_what_orjson_refuses_goes_through_the_json_module() -> None:
    big = {"n": 2**70, 1: "int key", None: "null key"}
    assert json.loads(encode(big)) == json.loads(json.dumps(big))
    # An integer past 64 bits is read as a float, as kube-apiserver holds it (int64 or float64).
    assert decode(b'{"n": 123456789012345678901234567890}') == {"n": 1.2345678901234568e29}
    assert decode('{"a": "b"}'.encode("utf-16")) == {"a": "b"}
    with pytest.raises(ValueError):
        decode(b"{not json")
