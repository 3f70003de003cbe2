"""netplay.protocol's cheap paths for the relay and for frames that failed validation."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netplay import protocol as p
from test_protocol import payloads, short


@given(sender=short, payload=payloads)
def test_relayed_signal_frame_is_what_encode_writes(
        sender: str, payload: p.OfferPayload | p.AnswerPayload | p.CandidatePayload) -> None:
    relayed = p.RelayedSignal(from_=sender, payload=payload)  # type: ignore[call-arg]
    frame = p.encode_relayed_signal(sender, payload)
    assert frame == p.encode(relayed)
    assert p.parse_server(frame) == relayed


@given(st.text(max_size=40))
def test_request_id_of_never_raises_and_is_in_range(text: str) -> None:
    rid = p.request_id_of(text)
    assert rid is None or 0 <= rid <= p.MAX_REQUEST_ID


@pytest.mark.parametrize(("frame", "expected"), [
    ('{"id": 5}', 5),
    ('{"id": %d}' % p.MAX_REQUEST_ID, p.MAX_REQUEST_ID),
    ('{"id": %d}' % (p.MAX_REQUEST_ID + 1), None),
    ('{"id": %d}' % 2**200, None),
    ('{"id": -1}', None),
    ('{"id": true}', None),
    ('{"id": 1.0}', None),
    ('{"id": 1, "x": ' + "[" * 50_000 + "]" * 50_000 + "}", None),
    ("[" * 50_000, None),
])
def test_request_id_of(frame: str, expected: int | None) -> None:
    assert p.request_id_of(frame) == expected


def test_hello_version_of_survives_deep_nesting_and_huge_numbers() -> None:
    deep = '{"type": "hello", "v": 2, "x": ' + "[" * 50_000 + "]" * 50_000 + "}"
    assert p.hello_version_of(deep) is None
    assert p.hello_version_of(json.dumps({"type": "hello", "v": 2**80})) is None
    assert p.hello_version_of(json.dumps({"type": "hello", "v": 7, "new": 1})) == 7
