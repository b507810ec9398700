"""reelrec.sparse: CSR helpers agree between numpy and torch and with a plain loop."""

from __future__ import annotations

import numpy as np
import torch

from reelrec.sparse import (
    csr_from_keys,
    csr_from_pairs,
    csr_keys,
    entry_rows,
    expand_ranges,
    expand_rows,
    indptr_of_rows,
)


def _matrix() -> tuple[np.ndarray, np.ndarray]:
    indptr = np.array([0, 2, 2, 5, 6], dtype=np.int64)  # row 1 is empty
    indices = np.array([1, 3, 0, 2, 4, 3], dtype=np.int64)
    return indptr, indices


def test_rows_keys_and_expansion_match_a_loop_in_numpy_and_torch() -> None:
    indptr, indices = _matrix()
    assert entry_rows(indptr).tolist() == [0, 0, 2, 2, 2, 3]
    assert csr_keys(indptr, indices, 5).tolist() == [1, 3, 10, 12, 14, 18]
    rows = np.array([3, 1, 0, 2])
    want = [(k, c) for k, r in enumerate(rows) for c in indices[indptr[r] : indptr[r + 1]]]
    pos, cols = expand_rows(indptr, indices, rows)
    assert list(zip(pos.tolist(), cols.tolist(), strict=True)) == want
    t = torch.as_tensor
    tpos, tcols = expand_rows(t(indptr), t(indices), t(rows))
    assert list(zip(tpos.tolist(), tcols.tolist(), strict=True)) == want
    assert torch.equal(entry_rows(t(indptr)), t(entry_rows(indptr)))
    rpos, rvals = expand_ranges(np.array([4, 0]), np.array([6, 1]), indices)
    assert rpos.tolist() == [0, 0, 1]
    assert rvals.tolist() == [4, 3, 1]


def test_csr_from_keys_and_pairs_round_trip() -> None:
    indptr, indices = _matrix()
    keys = csr_keys(indptr, indices, 5)
    back_indptr, back_indices = csr_from_keys(keys, 4, 5)
    assert back_indptr.tolist() == indptr.tolist()
    assert back_indices.tolist() == indices.tolist()
    assert indptr_of_rows(entry_rows(indptr), 4).tolist() == indptr.tolist()
    rows, cols = np.array([2, 0, 2, 0]), np.array([1, 3, 1, 0])
    p, i, v = csr_from_pairs(rows, cols, np.array([1.0, 2.0, 3.0, 4.0]), 3, 4)
    assert p.tolist() == [0, 2, 2, 3]
    assert i.tolist() == [0, 3, 1]
    assert v.tolist() == [4.0, 2.0, 3.0]  # the repeated pair (2, 1) keeps its last value
    assert v.dtype == np.float32


def test_in_sorted_is_isin_for_a_sorted_array() -> None:
    from reelrec.sparse import in_sorted

    rng = np.random.default_rng(0)
    sorted_keys = np.unique(rng.integers(0, 10_000, 3_000))
    keys = rng.integers(-5, 10_010, 5_000)
    np.testing.assert_array_equal(in_sorted(keys, sorted_keys), np.isin(keys, sorted_keys))
    assert not in_sorted(keys, np.zeros(0, dtype=np.int64)).any()
