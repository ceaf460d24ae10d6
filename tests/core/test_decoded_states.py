"""The judges' memory of the states they wrote (:class:`canaryd.core.judges.base.DecodedStates`).

A step reuses the memory behind the state object it wrote instead of decoding its numbers; the
reference is the other path, decoding every state from its numbers as a restarted controller
does. Both must give the same evidence, number for number, interval after interval, and a state
that is not the object written (read back, edited) must be decoded from its numbers."""

from __future__ import annotations

import numpy as np

from canaryd.api.models import AnalysisSpec, ArmCounts, IntervalRecord, JudgeState, MetricEvidence
from canaryd.core.judges import judge
from canaryd.core.judges import latency as latency_judge
from canaryd.core.judges import sequential as counts_judge
from canaryd.core.judges.base import DecodedStates
from canaryd.core.types import MetricReading

BOUNDS = ("5", "10", "25", "50", "100", "250", "500", "1000")


def _buckets(n: float, rng: np.random.Generator, slow: float) -> dict[str, float]:
    shares = np.sort(rng.uniform(0.0, 1.0, len(BOUNDS))) ** (1.0 + slow)
    out = {le: float(np.floor(n * s)) for le, s in zip(BOUNDS, shares, strict=True)}
    out["+Inf"] = n
    return out


def _readings(spec: AnalysisSpec, rng: np.random.Generator, i: int) -> list[MetricReading]:
    weight = 10 if i < 20 else 50
    total = float(rng.poisson(6000))
    c = float(round(total * weight / 100))
    s = total - c
    out = []
    for m in spec.metrics:
        if m.kind.value == "latency":
            rec = IntervalRecord(
                weight=weight,
                canary=ArmCounts(requests=c, latency_buckets=_buckets(c, rng, 0.3)),
                stable=ArmCounts(requests=s, latency_buckets=_buckets(s, rng, 0.0)),
            )
        else:
            rec = IntervalRecord(
                weight=weight,
                canary=ArmCounts(requests=c, errors=float(rng.poisson(c * 0.007))),
                stable=ArmCounts(requests=s, errors=float(rng.poisson(s * 0.005))),
            )
        out.append(MetricReading(metric=m.name, record=rec))
    return out


def _read_back(evidence: list[MetricEvidence]) -> list[MetricEvidence]:
    """The evidence as a restarted controller reads it: new objects, the same numbers."""
    return [MetricEvidence.model_validate(e.model_dump()) for e in evidence]


def test_remembered_and_decoded_states_give_the_same_evidence_interval_after_interval() -> None:
    spec = AnalysisSpec()
    kinds = {m.kind.value for m in spec.metrics}
    assert kinds == {"errorRate", "latency"}, kinds  # both judges are exercised
    remembered: list[MetricEvidence] = []
    decoded: list[MetricEvidence] = []
    rng = np.random.default_rng(20261202)
    hits = (latency_judge._DECODED.hits, counts_judge._DECODED.hits)
    for i in range(40):
        readings = _readings(spec, rng, i)
        remembered = list(judge(spec, remembered, readings, seconds=10.0).metrics)
        decoded = list(judge(spec, _read_back(decoded), readings, seconds=10.0).metrics)
        assert [e.wire() for e in remembered] == [e.wire() for e in decoded], i
    # The remembered path did use the memory at every step after the first (the read-back
    # path never can: its states are new objects).
    assert latency_judge._DECODED.hits - hits[0] == 39
    assert counts_judge._DECODED.hits - hits[1] == 39


def test_a_state_that_is_not_the_object_written_is_decoded_from_its_numbers() -> None:
    memory: DecodedStates[str] = DecodedStates()
    written = JudgeState(kind="k", values=[1.0, 2.0])
    memory.remember(written, "the memory behind [1, 2]")
    edited = written.model_copy(update={"values": [1.0, 3.0]})
    same_numbers = JudgeState(kind="k", values=[1.0, 2.0])
    assert memory.take(edited, lambda s: f"decoded {s.values}") == "decoded [1.0, 3.0]"
    assert memory.take(same_numbers, lambda s: f"decoded {s.values}") == "decoded [1.0, 2.0]"
    assert memory.take(written, lambda s: "decoded") == "the memory behind [1, 2]"
    # Taken once: a second step from the same object (a redone tick) decodes again.
    assert memory.take(written, lambda s: "decoded") == "decoded"


def test_an_entry_goes_with_its_state_object() -> None:
    memory: DecodedStates[int] = DecodedStates()
    for i in range(100):
        memory.remember(JudgeState(kind="k", values=[float(i)]), i)  # each dropped at once
    assert len(memory) == 0
