from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reelrec.data.dataset import Dataset, RatingScale, Vocabulary
from reelrec.errors import DataError, UnknownIdError


@given(st.lists(st.integers(-(10**12), 10**12), min_size=1, max_size=50))
def test_vocabulary_int_round_trip(raw: list[int]) -> None:
    vocab = Vocabulary.from_raw(raw, "user")
    idx = vocab.index(raw)
    assert idx.min() >= 0
    assert idx.max() < len(vocab)
    np.testing.assert_array_equal(vocab.raw(idx), np.asarray(raw))
    assert len(vocab) == len(set(raw))
    again = Vocabulary.from_json(vocab.to_json())
    np.testing.assert_array_equal(again.ids, vocab.ids)


@given(st.lists(st.text(alphabet="abcxyz-é_ ", min_size=1, max_size=6), min_size=1, max_size=30))
def test_vocabulary_str_round_trip(raw: list[str]) -> None:
    vocab = Vocabulary.from_raw(np.array(raw, dtype=object), "item")
    idx = vocab.index(np.array(raw, dtype=object))
    # integral strings are normalised to ints; everything else round-trips as text
    assert [str(x) for x in vocab.raw(idx)] == [str(vocab.coerce([r])[0]) for r in raw]


def test_vocabulary_unknown_ids() -> None:
    vocab = Vocabulary.from_raw([10, 20, 30], "user")
    assert vocab.index([20, 99], missing="negative").tolist() == [1, -1]
    with pytest.raises(UnknownIdError, match="unknown user id 99"):
        vocab.index([20, 99])
    assert "20" in vocab  # a CLI string names the same user
    assert "abc" not in vocab
    assert 99 not in vocab


def test_dataset_from_frame_keeps_file_order() -> None:
    frame = pd.DataFrame({"user": ["b", "a", "b"], "item": [7, 7, 3], "rating": [4, 5, 1]})
    ds = Dataset.from_frame(frame, name="t")
    assert ds.users.ids.tolist() == ["a", "b"]
    assert ds.user_index.tolist() == [1, 0, 1]
    assert ds.item_index.tolist() == [1, 1, 0]
    assert ds.rating.dtype == np.float32
    assert ds.scale == RatingScale(1.0, 5.0, None) or ds.scale.low == 1.0
    back = ds.to_frame()
    assert back["user"].tolist() == ["b", "a", "b"]
    assert ds.subset([2]).rating.tolist() == [1.0]


def test_dataset_rejects_bad_input() -> None:
    with pytest.raises(DataError, match="missing column"):
        Dataset.from_frame(pd.DataFrame({"user": [1], "rating": [3]}), name="t")
    with pytest.raises(DataError, match="row 2 is not a number"):
        Dataset.from_frame(pd.DataFrame({"user": [1, 2], "item": [1, 1], "rating": ["3", "x"]}), name="t")
    with pytest.raises(DataError, match="no ratings"):
        Dataset.from_frame(pd.DataFrame({"user": [], "item": [], "rating": []}), name="t")


def test_rating_scale_infers_steps() -> None:
    assert RatingScale.infer(np.array([1, 2, 5], dtype=np.float32)).step == 1.0
    assert RatingScale.infer(np.array([0.5, 1.0, 4.5, 5.0])).step == 0.5
    np.testing.assert_array_equal(RatingScale(1, 5).clip(np.array([0.2, 3.0, 7.0])), [1.0, 3.0, 5.0])


def test_fingerprint_changes_with_data() -> None:
    frame = pd.DataFrame({"user": [1, 2], "item": [1, 1], "rating": [3.0, 4.0]})
    a = Dataset.from_frame(frame, name="a").fingerprint()
    frame.loc[1, "rating"] = 5.0
    assert Dataset.from_frame(frame, name="a").fingerprint() != a


def test_vocabulary_keeps_ids_past_int64_exactly() -> None:
    """Python ints past int64 and uint64 past 2**63 stay distinct ids (text), never floats that merge."""
    raw = [10**30 + 1, 10**30 + 2, 2**64 - 1, 5]
    vocab = Vocabulary.from_raw(raw, "user")
    assert len(vocab) == 4
    assert sorted(vocab.ids.tolist()) == sorted(str(r) for r in raw)
    assert vocab.index([10**30 + 2, "1000000000000000000000000000001", np.uint64(2**64 - 1)]).tolist() == [
        vocab.index(str(10**30 + 2))[0],
        vocab.index(str(10**30 + 1))[0],
        vocab.index(str(2**64 - 1))[0],
    ]
    wide = Vocabulary.from_raw(np.array([2**64 - 1, 2**63, 3], dtype=np.uint64))
    assert sorted(wide.ids.tolist()) == ["18446744073709551615", "3", "9223372036854775808"]


def test_unknown_id_message_stays_one_short_line() -> None:
    with pytest.raises(UnknownIdError) as err:
        Vocabulary.from_raw(["a", "b"], "user").index("x" * 200_000)
    assert len(str(err.value)) < 150
    assert "200,000 characters" in str(err.value)
