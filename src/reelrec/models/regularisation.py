"""Regularisation shared by the embedding models (MF, ALS, the neural models, AutoRec).

* Frequency-weighted L2: an entity (user or item) with ``n`` training ratings is penalised per
  occurrence with weight ``(n / 100) ** (reg_alpha - 1)``, so over an epoch it carries a total
  penalty proportional to ``n ** reg_alpha`` (:func:`frequency_weights`; see :mod:`.mf`).
* Biases start at the closed-form regularised bias baseline ``mu + b_u + b_i``
  (:func:`baseline_biases`).
"""

from __future__ import annotations

import numpy as np
import torch

from reelrec.data.dataset import Dataset
from reelrec.models.baselines import fit_biases

#: training count at which the frequency weight of the L2 penalty is 1
REG_REFERENCE_COUNT = 100.0
#: shrinkage (in ratings) and sweeps of the closed-form bias fit that initialises the biases
BIAS_INIT_REG = 10.0
BIAS_INIT_ITERATIONS = 10


def frequency_weights(counts: np.ndarray, alpha: float) -> torch.Tensor:
    """Per-occurrence L2 weights ``(n / 100) ** (alpha - 1)``: over an epoch an entity with ``n``
    training ratings then carries a total penalty proportional to ``n ** alpha``."""
    return torch.as_tensor(
        (np.maximum(counts, 1) / REG_REFERENCE_COUNT) ** (alpha - 1.0), dtype=torch.float32
    )


def baseline_biases(train: Dataset, n_users: int, n_items: int) -> tuple[float, np.ndarray, np.ndarray]:
    """The closed-form regularised ``mu + b_u + b_i`` fit used to initialise model biases."""
    return fit_biases(
        train.user_index,
        train.item_index,
        train.rating,
        n_users,
        n_items,
        BIAS_INIT_REG,
        BIAS_INIT_REG,
        BIAS_INIT_ITERATIONS,
    )
