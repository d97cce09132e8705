"""Four-lane float64 vectors for numba kernels (LLVM ``<4 x double>``).

Numba does not vectorise the likelihood kernel's short loops by itself (it
cannot prove that the arrays do not alias, and loops of four are below the
loop vectoriser's threshold), so the kernel writes its lane arithmetic with
these explicit vectors: ``vload(a, k)`` reads ``a[k:k + 4]`` of a contiguous
float64 array (flat index ``k``), ``vstore(a, k, v)`` writes it, ``vsplat(x)``
repeats a scalar in every lane; ``+``, ``-``, ``*`` and ``vneg`` act lane by
lane. Every lane is plain IEEE arithmetic (no fused multiply-add, no
reassociation), so a lane's numbers are those of the same scalar code, whatever
the other lanes hold. On a CPU without 256-bit vectors LLVM splits the
operations; the results are the same.
"""
from __future__ import annotations

import operator

from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, models, overload, register_model

LANES = 4
_VT = ir.VectorType(ir.DoubleType(), LANES)


class Vec4Type(types.Type):
    def __init__(self):
        super().__init__(name="Vec4")


vec4 = Vec4Type()


@register_model(Vec4Type)
class _Vec4Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VT)


def _pointer(context, builder, aryty, ary, k):
    data = context.make_array(aryty)(context, builder, ary).data
    return builder.bitcast(builder.gep(data, [k]), _VT.as_pointer())


@intrinsic
def vload(typingctx, a, k):
    """``a[k:k + 4]`` of a C-contiguous float64 array, as a vector (``k`` a flat element index)."""
    def codegen(context, builder, sig, args):
        return builder.load(_pointer(context, builder, sig.args[0], args[0], args[1]), align=8)
    return vec4(a, k), codegen


@intrinsic
def vstore(typingctx, a, k, v):
    """``a[k:k + 4] = v``."""
    def codegen(context, builder, sig, args):
        builder.store(args[2], _pointer(context, builder, sig.args[0], args[0], args[1]), align=8)
        return context.get_dummy_value()
    return types.void(a, k, vec4), codegen


@intrinsic
def vsplat(typingctx, x):
    """The float64 ``x`` in every lane."""
    def codegen(context, builder, sig, args):
        x = context.cast(builder, args[0], sig.args[0], types.float64)
        v = ir.Constant(_VT, ir.Undefined)
        for i in range(LANES):
            v = builder.insert_element(v, x, ir.Constant(ir.IntType(32), i))
        return v
    return vec4(x), codegen


@intrinsic
def vneg(typingctx, a):
    """``-a`` lane by lane (exact)."""
    def codegen(context, builder, sig, args):
        return builder.fneg(args[0])
    return vec4(vec4), codegen


def _lanewise(instruction):
    @intrinsic
    def op(typingctx, a, b):
        def codegen(context, builder, sig, args):
            return getattr(builder, instruction)(args[0], args[1])
        return vec4(vec4, vec4), codegen
    return op


_OPS = {operator.add: _lanewise("fadd"), operator.sub: _lanewise("fsub"), operator.mul: _lanewise("fmul")}


def _register(op, impl):
    @overload(op)
    def _ov(a, b):
        if a is vec4 and b is vec4:
            return lambda a, b: impl(a, b)


for _op, _impl in _OPS.items():
    _register(_op, _impl)
