"""engine.safejson: whatever bytes come, the answer is a value within the caps or one BadJSON sentence."""

from __future__ import annotations

import json
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.safejson import MAX_DEPTH, BadJSON, loads, loads_object

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_give_a_value_or_a_sentence(data: bytes) -> None:
    try:
        loads(data, what="request body", max_bytes=300)
    except BadJSON as exc:
        assert exc.code == "bad_json" and exc.message.startswith("The request body ") and exc.message.endswith(".")


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_json_within_the_caps_round_trips(value: object) -> None:
    assert loads(json.dumps(value), what="x", max_bytes=1 << 20) == value


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=200_000), st.sampled_from("[{"))
def test_any_nesting_is_refused_past_the_depth_cap_never_a_recursion_error(depth: int, opener: str) -> None:
    text = "[" * depth + "]" * depth if opener == "[" else '{"a":' * depth + "1" + "}" * depth
    if depth <= MAX_DEPTH:  # containers sit at depths 0 .. depth-1
        assert loads(text, what="x", max_bytes=1 << 22) is not None
    else:
        with pytest.raises(BadJSON, match="nested too deeply"):
            loads(text, what="x", max_bytes=1 << 22)


def test_a_huge_object_is_refused_by_size_before_it_costs_memory() -> None:
    huge = "{" + ",".join(f'"k{n}":0' for n in range(1_000_000)) + "}"
    tracemalloc.start()
    try:
        with pytest.raises(BadJSON, match="too large"):
            loads(huge, what="options field", max_bytes=16 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024, "refused without parsing"


def test_too_many_values_and_the_wrong_kind_are_sentences() -> None:
    with pytest.raises(BadJSON, match="too many values"):
        loads("[" + ",".join(["0"] * 2000) + "]", what="x", max_bytes=1 << 20, max_items=1000)
    with pytest.raises(BadJSON, match="must be a JSON object"):
        loads_object("[1]", what="options field", max_bytes=100)
    with pytest.raises(BadJSON, match="isn't UTF-8"):
        loads(b'{"a": "\xff"}', what="x", max_bytes=100)
    with pytest.raises(BadJSON, match="isn't valid JSON"):
        loads("9" * 5000, what="x", max_bytes=10_000)  # past int's digit limit: a ValueError, not a crash
    assert loads_object(b'{"a": [1, {"b": null}]}', what="x", max_bytes=100) == {"a": [1, {"b": None}]}
