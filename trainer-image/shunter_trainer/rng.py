"""Every random generator a loop usually draws from, as checkpointable state.

`capture()` returns torch's CPU generator, every CUDA device's, Python's `random` and
NumPy's global generator (when NumPy is installed) in types `torch.load(...,
weights_only=True)` accepts (tensors, ints, tuples): NumPy's key array is stored as a
tensor. With the model, optimizer and scheduler state, `restore()` makes a resumed
run draw the same batches and dropout masks as an uninterrupted one.
"""

from __future__ import annotations

import random
from typing import Any

import torch


def _numpy() -> Any:
    """NumPy, when installed (it is optional)."""
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def capture() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    np = _numpy()
    if np is not None:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        state["numpy"] = (str(kind), torch.from_numpy(keys.copy()), pos, has_gauss, gauss)
    return state


def restore(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np = _numpy()
    if "numpy" in state and np is not None:
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy(), pos, has_gauss, gauss))
