"""Per-mouse counter-based random streams (implemented in :mod:`envs.rng`, the lower layer)."""
from envs.rng import CHOICE, INIT_JITTER, STIMULUS, ZERO_REWARD_SIDE, as_seed_tensor, mouse_seeds, normal, stream_key, uniform

__all__ = ["CHOICE", "INIT_JITTER", "STIMULUS", "ZERO_REWARD_SIDE", "as_seed_tensor", "mouse_seeds", "normal", "stream_key", "uniform"]
