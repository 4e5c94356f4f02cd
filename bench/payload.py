"""The small request every server is measured with: a 32x10 focal loss in JSON."""

from __future__ import annotations

import numpy as np
import orjson

PATH = "/loss/focal"
ROWS, COLUMNS = 32, 10


def small_request(seed: int = 0) -> bytes:
    """Predictions in (0, 1), 0/1 targets, default params, outputs ["loss"] (about 6.4 KB)."""
    rng = np.random.default_rng(seed)
    predictions = rng.uniform(0.01, 0.99, (ROWS, COLUMNS)).tolist()
    targets = rng.integers(0, 2, (ROWS, COLUMNS)).astype(float).tolist()
    return orjson.dumps({"predictions": predictions, "targets": targets, "outputs": ["loss"]})
