"""Hypothesis strategies for hostile ``/invocations`` payloads, shared by the REST fuzz test and
``bench/bench_fuzz.py``: malformed, wrong-typed, unicode, binary and empty bodies."""

from __future__ import annotations

import json

from hypothesis import strategies as st

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
SPLIT_PAYLOADS = st.fixed_dictionaries(
    {
        "dataframe_split": st.fixed_dictionaries(
            {
                "columns": st.lists(
                    st.sampled_from(["county_code", "as_of", "belts_within_100km_share", "bogus", "曹县"])
                    | st.text(max_size=12),
                    max_size=4,
                ),
                "data": st.lists(st.lists(JSON_SCALARS, max_size=4), max_size=4),
            }
        )
    }
)
PAYLOADS = st.one_of(SPLIT_PAYLOADS, JSON_VALUES, st.binary(max_size=200), st.text(max_size=300))


def encode(payload: object) -> bytes:
    """The request body of a generated payload (bytes as they are, anything else as JSON)."""
    return payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
