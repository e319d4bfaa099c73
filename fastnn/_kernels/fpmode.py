"""The floating-point mode of the training loop: denormals flushed to zero.

Adam's moments of a parameter whose gradient stays 0 (a dead ReLU unit, an input pixel that is
always 0) decay into the float32 denormal range and stick there (m - 0.1 m rounds back to m),
and every later update of them costs a ~100-cycle microcode assist: the small net at batch 1
ran 10x slower. train_steps therefore flushes denormals to zero (MXCSR FTZ|DAZ, as XLA and
TensorFlow do on CPU) and restores the caller's setting on return. Values below 1.2e-38
become 0; nothing else changes. Elsewhere than x86 all of this is a no-op.
"""
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .sync import X86

FLUSH_DENORMALS = 0x8040  # MXCSR flush-to-zero (bit 15) | denormals-are-zero (bit 6)


@intrinsic
def read_fp_mode(typingctx):
    """The x86 MXCSR register (0 elsewhere), inside compiled code."""
    def codegen(context, builder, signature, args):
        if not X86:
            return ir.Constant(ir.IntType(64), 0)
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [slot.type]), "llvm.x86.sse.stmxcsr")
        builder.call(fn, [slot])
        return builder.zext(builder.load(slot), ir.IntType(64))
    return types.int64(), codegen


@intrinsic
def write_fp_mode(typingctx, mode):
    """Load the x86 MXCSR register (no-op elsewhere), inside compiled code."""
    def codegen(context, builder, signature, args):
        if X86:
            slot = cgutils.alloca_once(builder, ir.IntType(32))
            builder.store(builder.trunc(args[0], ir.IntType(32)), slot)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [slot.type]),
                "llvm.x86.sse.ldmxcsr")
            builder.call(fn, [slot])
        return context.get_dummy_value()
    return types.none(types.int64), codegen


@njit(cache=True)
def fp_mode():
    """The caller's floating-point mode (x86 MXCSR; 0 elsewhere), for set_fp_mode."""
    return read_fp_mode()


@njit(cache=True)
def set_fp_mode(mode):
    """Restore a mode from fp_mode(). train_steps restores the caller's mode itself when it
    returns, but not when a kernel raises inside it: the CPU backend calls this on close."""
    write_fp_mode(mode)
