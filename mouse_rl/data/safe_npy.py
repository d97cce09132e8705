"""Read ``.npy`` files without running code from them (or handing crafted state to numpy's C code).

The Liebana et al. files are ``np.save`` of a dict, i.e. a 0-d object array
whose payload is a pickle. ``np.load(..., allow_pickle=True)`` would run any
callable that a crafted pickle names (``os.system`` and the like). Here the
pickle is read by :class:`RestrictedUnpickler`, which resolves only the names
a numpy pickle of arrays, dtypes and scalars uses, and maps each to a
pure-Python stand-in (:class:`_DTypeSpec`, :class:`_ArraySpec`): the state
in the file is checked (dtype kind, byte order, shape, data length) before
any numpy array is built from it with ``np.frombuffer``. Plain containers
(dict, list, tuple, str, numbers) need no names at all. Anything else is a
:class:`~mouse_rl.data.validation.DataFormatError` naming the file and the
refused name, raised before the refused object is ever created.
"""
from __future__ import annotations

import collections
import io
import math
import pickle
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from mouse_rl.data.validation import DataFormatError

#: Array element kinds accepted (bool, ints, floats, complex, bytes, text; object only in object arrays).
PLAIN_KINDS = "biufcSU"
_BYTE_ORDERS = ("<", ">", "|", "=")
_CORES = ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric")


class _Refused(Exception):
    """Raised inside the unpickler for state that does not describe a plain numpy value."""


class _DTypeSpec:
    """Stand-in for ``numpy.dtype(spec, align, copy)`` in a pickle; :attr:`dtype` once checked."""

    def __init__(self, spec, align=False, copy=True):
        if not isinstance(spec, str) or len(spec) > 8:
            raise _Refused(f"dtype {spec!r}")
        try:
            dtype = np.dtype(spec)
        except TypeError:
            raise _Refused(f"dtype {spec!r}") from None
        if dtype.kind not in PLAIN_KINDS + "O" or dtype.fields is not None or dtype.subdtype is not None:
            raise _Refused(f"dtype {spec!r}")
        self.dtype = dtype

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in _BYTE_ORDERS:
            raise _Refused(f"dtype state {state!r}"[:80])
        if self.dtype.kind != "O" and state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])


class _ArraySpec:
    """Stand-in for ``numpy.core.multiarray._reconstruct(ndarray, ...)``; :attr:`value` once its state is set."""

    def __init__(self, cls=None, shape=None, typecode=None):
        if cls is not _ndarray:
            raise _Refused(f"array subclass {cls!r}"[:80])
        self.value = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) != 5:
            raise _Refused("array state")
        _, shape, spec, fortran, data = state
        self.value = _build_array(shape, spec, fortran, data)


def _shape(shape) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or len(shape) > 32 or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise _Refused(f"array shape {shape!r}"[:80])
    return shape


def _build_array(shape, spec, fortran, data) -> np.ndarray:
    shape = _shape(shape)
    if not isinstance(spec, _DTypeSpec) or not isinstance(fortran, bool):
        raise _Refused("array dtype")
    count = math.prod(shape)
    order = "F" if fortran else "C"
    if spec.dtype.kind == "O":
        if not isinstance(data, list) or len(data) != count:
            raise _Refused("object array items")
        out = np.empty(count, dtype=object)
        out[:] = [_resolve(item) for item in data] if count else []
        return out.reshape(shape, order=order)
    if not isinstance(data, (bytes, bytearray)) or len(data) != count * spec.dtype.itemsize:
        raise _Refused(f"array data of {len(data) if isinstance(data, (bytes, bytearray)) else '?'} bytes "
                       f"for shape {shape} of {spec.dtype}")
    return np.frombuffer(bytes(data), dtype=spec.dtype, count=count).reshape(shape, order=order).copy()


def _scalar(spec, data=None):
    """Stand-in for ``numpy.core.multiarray.scalar(dtype, bytes)``."""
    if not isinstance(spec, _DTypeSpec):
        raise _Refused("scalar dtype")
    if spec.dtype.kind == "O":
        return data
    if not isinstance(data, bytes) or len(data) != spec.dtype.itemsize:
        raise _Refused("scalar data")
    return np.frombuffer(data, dtype=spec.dtype, count=1)[0]


def _frombuffer(buffer, spec, shape, order):
    """Stand-in for ``numpy.core.numeric._frombuffer`` (pickle protocol 5 arrays)."""
    if order not in ("C", "F"):
        raise _Refused("array order")
    data = bytes(buffer) if isinstance(buffer, (bytes, bytearray, memoryview, pickle.PickleBuffer)) else None
    if data is None or getattr(spec, "dtype", np.dtype(object)).kind == "O":
        raise _Refused("array buffer")
    return _build_array(tuple(shape) if isinstance(shape, (tuple, list)) else shape, spec, order == "F", data)


def _ndarray(*args):
    raise _Refused("direct ndarray construction")


def _resolve(obj, depth: int = 0):
    """Replace every :class:`_ArraySpec` in a loaded structure by its array."""
    if depth > 200:
        raise _Refused("nesting deeper than 200 levels")
    if isinstance(obj, _ArraySpec):
        if obj.value is None:
            raise _Refused("array without state")
        return obj.value
    if isinstance(obj, _DTypeSpec):
        return obj.dtype
    if isinstance(obj, dict):
        return type(obj)((_resolve(k, depth + 1), _resolve(v, depth + 1)) for k, v in obj.items())
    if isinstance(obj, list):
        return [_resolve(v, depth + 1) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v, depth + 1) for v in obj)
    return obj


#: (module, name) -> safe stand-in, for what a numpy pickle of arrays, dtypes and scalars uses
#: (numpy 1.x wrote ``numpy.core``, numpy 2 writes ``numpy._core``).
ALLOWED_GLOBALS = {
    **{(core, "_reconstruct"): _ArraySpec for core in _CORES[:2]},
    **{(core, "scalar"): _scalar for core in _CORES[:2]},
    **{(core, "_frombuffer"): _frombuffer for core in _CORES[2:]},
    ("numpy", "ndarray"): _ndarray,
    ("numpy", "dtype"): _DTypeSpec,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`, each to a safe stand-in.

    Built on the pure-Python unpickler, whose memo is a dict: the C unpickler
    allocates a memo table as large as any index a (crafted) PUT opcode names.
    Give it an in-memory file (:class:`io.BytesIO`), whose reads never
    allocate more than the data left.
    """

    def __init__(self, file, source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise DataFormatError(
                f"{self.source}: refused to load {module}.{name} from the pickle: only numpy arrays, "
                "scalars and plain containers (dict, list, tuple, str, numbers) are allowed in data files"
            )
        return ALLOWED_GLOBALS[(module, name)]

    def persistent_load(self, pid):
        raise DataFormatError(f"{self.source}: refused a persistent reference in the pickle")

    def load(self):
        try:
            return _resolve(super().load())
        except _Refused as err:
            raise DataFormatError(f"{self.source}: refused pickle content ({err}): not a plain numpy value") from None


def _header(fh, source: str):
    try:
        version = npy_format.read_magic(fh)
        if version == (1, 0):
            return npy_format.read_array_header_1_0(fh)
        return npy_format.read_array_header_2_0(fh)
    except Exception as err:  # bad magic, truncated or garbled header
        raise DataFormatError(f"{source}: not a valid .npy file ({_reason(err)})") from None


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def read_npy(path) -> object:
    """Return the content of a ``.npy`` file, unpickling object arrays safely.

    Parameters
    ----------
    path : str or pathlib.Path
        ``.npy`` file: a plain array, or an object array (e.g. ``np.save`` of a
        dict) whose pickle holds only numpy arrays, scalars and plain containers.

    Returns
    -------
    object
        A numpy array; for a 0-d object array (a saved dict) its single item.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    DataFormatError
        Empty, truncated or garbled file, or a pickle that names anything
        outside :data:`ALLOWED_GLOBALS` (nothing from it is executed).
    """
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if path.stat().st_size == 0:
        raise DataFormatError(f"{source}: the file is empty (0 bytes), not a .npy file")
    with path.open("rb") as fh:
        shape, fortran, dtype = _header(fh, source)
        if not dtype.hasobject and (dtype.kind not in PLAIN_KINDS or dtype.fields is not None):
            raise DataFormatError(f"{source}: unsupported array dtype {dtype} (numbers or a pickled dict expected)")
        try:
            if dtype.hasobject:
                value = RestrictedUnpickler(io.BytesIO(fh.read()), source).load()
            else:
                value = _read_plain(fh, shape, fortran, dtype)
        except DataFormatError:
            raise
        except Exception as err:  # truncated or garbled payload
            raise DataFormatError(f"{source}: corrupt or truncated .npy payload ({_reason(err)})") from None
    if isinstance(value, np.ndarray) and value.dtype.hasobject and value.shape == ():
        return value.item()
    return value


def _read_plain(fh, shape, fortran, dtype) -> np.ndarray:
    """The data of a plain (non-object) array whose header has been read."""
    count = 1
    for n in shape:
        count *= int(n)
    needed, left = count * dtype.itemsize, _bytes_left(fh)
    if needed != left:
        raise ValueError(f"the header promises {needed} data bytes (shape {shape}, {dtype}) but {left} follow")
    data = fh.read(needed)
    array = np.frombuffer(data, dtype=dtype, count=count)
    return array.reshape(shape[::-1]).transpose() if fortran else array.reshape(shape)


def _bytes_left(fh) -> int:
    here = fh.tell()
    end = fh.seek(0, 2)
    fh.seek(here)
    return end - here
