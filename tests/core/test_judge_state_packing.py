"""A judge's state is written packed (base64 of little-endian doubles): bit-exact through the
JSON of a status write and its echo, about half the bytes of the list, still read from a list
(statuses of earlier versions), and a packed text that does not decode is a clear error the
judge recovers from, never a crash."""

from __future__ import annotations

import base64
import json
import math
import struct

import numpy as np
import pytest

from canaryd.api.models import JudgeState, MetricEvidence

AWKWARD = [0.0, -0.0, 5e-324, -1e-310, 1.7976931348623157e308, 1 / 3, -2.5, 1e16 + 1, 7.0]


def test_numbers_survive_the_wire_bit_for_bit() -> None:
    state = JudgeState.of("latency/2", AWKWARD)
    wire = json.loads(json.dumps(state.model_dump(mode="json", by_alias=True)))
    back = JudgeState.model_validate(wire).numbers()
    assert [struct.pack("<d", x) for x in back] == [struct.pack("<d", x) for x in AWKWARD]
    assert math.copysign(1.0, back[1]) == -1.0


def test_the_layout_is_little_endian_doubles_in_order() -> None:
    # independent of the implementation: struct's explicit little-endian format
    expected = base64.b64encode(struct.pack("<9d", *AWKWARD)).decode()
    assert JudgeState.of("k", AWKWARD).packed == expected


def test_packed_is_about_half_the_list_for_a_latency_sized_state() -> None:
    numbers = np.random.default_rng(7).normal(0, 50, 1019).tolist()
    as_list = len(json.dumps(JudgeState(kind="k", values=numbers).model_dump(mode="json")))
    as_text = len(json.dumps(JudgeState.of("k", numbers).model_dump(mode="json")))
    assert as_text < 0.6 * as_list, (as_text, as_list)


def test_a_status_of_an_earlier_version_is_read_from_its_list() -> None:
    old = MetricEvidence.model_validate(
        {"name": "m", "outcome": "Inconclusive", "state": {"kind": "k", "values": [1.0, 2.5]}}
    )
    assert old.state is not None and old.state.numbers() == [1.0, 2.5]


@pytest.mark.parametrize(
    ("packed", "message"),
    [
        ("not base64!", "not base64"),
        (base64.b64encode(b"\x00" * 12).decode(), "12 bytes"),
    ],
)
def test_a_packed_text_that_does_not_decode_is_a_value_error(packed: str, message: str) -> None:
    state = JudgeState.model_validate({"kind": "k", "packed": packed})
    with pytest.raises(ValueError, match=message):
        state.numbers()
