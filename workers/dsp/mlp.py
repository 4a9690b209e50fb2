"""Inference of the small fully connected networks of ``workers/dsp/data``
(ReLU hidden layers, a linear output), in numpy on the CPU.

A weights file is an ``.npz`` with ``layers`` (the count) and ``w{i}``
(inputs × outputs), ``b{i}`` per layer, stored as float16 and computed in
float32; the training scripts in ``bench/`` write them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"


@lru_cache(maxsize=8)
def load(name: str) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The layers of ``data/<name>.npz``."""
    with np.load(DATA / f"{name}.npz") as z:
        n = int(z["layers"])
        return tuple((z[f"w{i}"].astype(np.float32), z[f"b{i}"].astype(np.float32)) for i in range(n))


def forward(x: np.ndarray, name: str) -> np.ndarray:
    """The network's outputs (rows of ``x`` in, rows out), before any softmax."""
    h = np.asarray(x, np.float32)
    layers = load(name)
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            np.maximum(h, 0, out=h)
    return h
