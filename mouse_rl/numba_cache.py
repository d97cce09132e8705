"""Numba's on-disk cache, made to notice edits of the other files a cached kernel compiles in.

Numba invalidates a cached function only when its own source file changes: code it inlines or calls from
another module, and module constants, are frozen into the cached machine code (a documented limitation of
``cache=True``). The fused kernels compile the model's step from :mod:`mouse_rl.fused_step`, the vector
lanes of :mod:`mouse_rl.fit.vec4` and ``MAX_WEIGHT`` of :mod:`mouse_rl.network`; after an edit of one of
those (a ``git pull`` of a checkout, a developer's change) they would go on running the old model. Numba
does hash the values a cached function closes over into its cache key, so each kernel is built by a factory
that closes over :func:`source_fingerprint` of the modules it depends on and names it in its body.
"""
from __future__ import annotations

import hashlib
import types


def source_fingerprint(*modules: types.ModuleType) -> str:
    """SHA-256 (hex) of the source files of ``modules``, in order."""
    h = hashlib.sha256()
    for m in modules:
        with open(m.__file__, "rb") as f:
            h.update(f.read())
    return h.hexdigest()
