"""Counter-based random numbers: one independent stream per mouse, batch-size invariant.

A draw is a pure hash of (mouse seed, stream, counter), so mouse *i* of a
cohort sees exactly the numbers it would see simulated alone, on CPU or CUDA,
and a run can resume from any trial without saving generator state.
"""
from __future__ import annotations

import numpy as np
import torch

_M32 = 0xFFFFFFFF
_TWO32 = 4294967296.0

#: Named streams (one per kind of random decision).
STIMULUS, ZERO_REWARD_SIDE, CHOICE, INIT_JITTER = 1, 2, 3, 4
#: Choices on hidden correction trials (the k-th after trial t at counter ``t * MAX_CORRECTIONS + k``).
CORRECTION = 13
#: Most hidden correction trials after one error (the counter stride of the ``CORRECTION`` stream).
MAX_CORRECTIONS = 64


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """Avalanche hash of uint32 values stored in int64 (constants < 2**31: no int64 overflow)."""
    x = x ^ (x >> 16)
    x = (x * 0x21F0AAAD) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x735A2D97) & _M32
    return x ^ (x >> 15)


def mouse_seeds(seed: int, n_mice: int) -> np.ndarray:
    """Per-mouse seeds (uint32 values as int64) derived from one cohort seed in [0, 2**32 - 1]."""
    if int(seed) != seed or not 0 <= seed <= _M32:
        raise ValueError(f"seed: must be an integer in [0, 2**32 - 1], got {seed!r}")
    base = _mix32(torch.tensor([int(seed) & _M32], dtype=torch.int64))
    ids = torch.arange(n_mice, dtype=torch.int64)
    return _mix32((base * 0x9E3779B & _M32) ^ _mix32(ids + 0x632BE5AB & _M32)).numpy()


def as_seed_tensor(seeds, device=None) -> torch.Tensor:
    """Validate per-mouse seeds and return them as an int64 tensor of uint32 values."""
    t = torch.as_tensor(np.asarray(seeds), dtype=torch.int64, device=device).reshape(-1)
    if t.numel() == 0:
        raise ValueError("seeds: need at least one mouse seed")
    if bool((t < 0).any()) or bool((t > _M32).any()):
        raise ValueError(f"seeds: must lie in [0, 2**32), got min {int(t.min())}, max {int(t.max())}")
    return t


def stream_key(seeds: torch.Tensor, stream: int) -> torch.Tensor:
    """Per-mouse key of one stream, ``(n_mice,)``; reuse it for many draws."""
    return _mix32(seeds ^ _mix32(torch.as_tensor(stream * 0x01000193 & _M32, device=seeds.device)))


def uniform(seeds: torch.Tensor, stream: int, counter, dtype=torch.float64, key: torch.Tensor | None = None) -> torch.Tensor:
    """Uniform draws in (0, 1), one per mouse, for a given stream and counter.

    ``counter`` is an int or an int64 tensor broadcastable to ``seeds``
    (e.g. the global trial index, or a column of trial indices for a block
    of draws), in [0, 2**32). ``key`` may pass a precomputed
    :func:`stream_key`. Resolution 2**-32.
    """
    key = stream_key(seeds, stream) if key is None else key
    counter = torch.as_tensor(counter, dtype=torch.int64, device=seeds.device)
    h = _mix32(key ^ _mix32(_mix32(counter & _M32) ^ (counter >> 32)))
    return (h.to(dtype) + 0.5) * (1.0 / _TWO32)


def normal(seeds: torch.Tensor, stream: int, counter, dtype=torch.float64) -> torch.Tensor:
    """Standard normal draws (Box-Muller on two uniform streams)."""
    counter = torch.as_tensor(counter, dtype=torch.int64, device=seeds.device)
    u1 = uniform(seeds, stream, 2 * counter, torch.float64)
    u2 = uniform(seeds, stream, 2 * counter + 1, torch.float64)
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2 * torch.pi * u2)).to(dtype)
