"""Timestamps and dates of every shape, at the ground floor: a refusal, or a time within bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError

from providers.fields import EARLIEST, LATEST, event_time
from providers.payload import parse_time
from providers.signing import epoch_seconds, verify_standard_webhook
from providers.verdicts import Refusal

NOW = 1_800_000_000

header_texts = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="0123456789+-_ .eE", min_size=1, max_size=40),
    st.integers(min_value=-(10**500), max_value=10**500).map(str),
    st.from_regex(r"[0-9]{1,40}", fullmatch=True),
    st.integers(min_value=0, max_value=10**12).map(lambda n: f"{n:_}"),
    st.characters(categories=["Nd"]).flatmap(lambda d: st.integers(1, 12).map(lambda k: d * k)),
)


@given(text=header_texts)
def test_only_short_ascii_digit_strings_are_timestamps(text: str) -> None:
    try:
        value = epoch_seconds(text, "webhook-timestamp")
    except Refusal as refused:
        assert refused.status == 401 and "webhook-timestamp" in refused.reason
        assert not (text.isascii() and text.isdigit() and 0 < len(text) <= 12)
    else:
        assert text.isascii() and text.isdigit() and len(text) <= 12 and value == int(text)


@given(text=header_texts)
def test_a_signed_request_with_any_timestamp_is_a_401_or_verified(text: str) -> None:
    headers = {"webhook-id": "m", "webhook-timestamp": text, "webhook-signature": "v1,AAAA"}
    with pytest.raises(Refusal) as refused:
        verify_standard_webhook(headers, b"{}", [b"secret"], float(NOW))
    assert refused.value.status == 401


offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
moments = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999))


@given(moment=moments, offset=st.none() | offsets)
def test_event_times_are_utc_within_bounds_or_refused(moment: datetime, offset: timezone | None) -> None:
    value = moment.replace(tzinfo=offset)
    try:
        result = event_time(value)
    except PydanticCustomError as refused:
        assert refused.type == "time_range"
        naive_utc = moment - (offset.utcoffset(None) if offset else timedelta())
        assert not datetime(1970, 1, 1) <= naive_utc < datetime(9000, 1, 1)
    else:
        assert result.tzinfo is UTC and EARLIEST <= result < LATEST
        assert result == value.replace(tzinfo=value.tzinfo or UTC)


payload_times = st.one_of(
    moments.flatmap(
        lambda m: st.sampled_from([m.isoformat(), m.isoformat() + "Z", f"{m:%Y-%m-%d %H:%M:%S} UTC"])
    ),
    st.tuples(moments, offsets).map(lambda p: p[0].replace(tzinfo=p[1]).isoformat()),
    st.integers(min_value=-(10**25), max_value=10**25),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


@given(value=payload_times)
def test_payload_times_are_parsed_or_refused_naming_the_path(value: Any) -> None:
    try:
        result = parse_time(value, "pull_request.updated_at")
    except Refusal as refused:
        assert refused.status == 400 and "pull_request.updated_at" in refused.reason
    else:
        assert result is None or (result.tzinfo is UTC and EARLIEST <= result < LATEST)
