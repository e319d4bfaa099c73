"""Row-major GEMM on sub-blocks of flat buffers, straight into BLAS.

numba's np.dot wants whole contiguous arrays and always computes C = A @ B. Splitting a GEMM
between threads needs more: a block of columns of W has a leading dimension wider than the
block, and dW = x.T @ dz on a range of x's columns reads a strided transposed operand. `gemm`
takes a pointer (array + element offset) and a leading dimension per operand, like cblas, and
calls the same BLAS that np.dot uses (scipy's, through numba's `numba_xxgemm` helper, which is
resolved by name at link time, so the functions that call it stay cacheable).
"""
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_KINDS = {types.float32: "s", types.float64: "d"}


@intrinsic
def _xxgemm(typingctx, transa, transb, m, n, k, a, a_off, lda, b, b_off, ldb, beta, c, c_off,
            ldc):
    """Column-major BLAS gemm: c = op(a) @ op(b) + beta c, the operands given as array data
    pointers advanced by *_off elements. transa/transb: 0 = 'n', 1 = 't'."""
    dtype = c.dtype
    if dtype not in _KINDS or a.dtype != dtype or b.dtype != dtype:
        return None
    sig = types.none(transa, transb, m, n, k, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc)

    def codegen(context, builder, signature, args):
        (ta, tb, m_, n_, k_, a_, aoff, lda_, b_, boff, ldb_, beta_, c_, coff, ldc_) = args
        tys = signature.args
        intp = context.get_value_type(types.intp)
        char = ir.IntType(8)
        voidp = ir.IntType(8).as_pointer()

        def ptr(arr, aty, off, offty):
            data = context.make_array(aty)(context, builder, arr).data
            off = context.cast(builder, off, offty, types.intp)
            return builder.bitcast(builder.gep(data, [off]), voidp)

        def trans(flag, fty):
            flag = context.cast(builder, flag, fty, types.intp)
            is_t = builder.icmp_signed("!=", flag, ir.Constant(intp, 0))
            return builder.select(is_t, ir.Constant(char, ord("t")), ir.Constant(char, ord("n")))

        def as_intp(v, ty):
            return context.cast(builder, v, ty, types.intp)

        lltype = context.get_value_type(dtype)
        alpha_slot = cgutils.alloca_once_value(builder, ir.Constant(lltype, 1.0))
        beta_slot = cgutils.alloca_once_value(
            builder, context.cast(builder, beta_, tys[11], dtype))
        fnty = ir.FunctionType(ir.IntType(32), [char, char, char, intp, intp, intp, voidp, voidp,
                                                intp, voidp, intp, voidp, voidp, intp])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
        builder.call(fn, [ir.Constant(char, ord(_KINDS[dtype])), trans(ta, tys[0]),
                          trans(tb, tys[1]), as_intp(m_, tys[2]), as_intp(n_, tys[3]),
                          as_intp(k_, tys[4]), builder.bitcast(alpha_slot, voidp),
                          ptr(a_, tys[5], aoff, tys[6]), as_intp(lda_, tys[7]),
                          ptr(b_, tys[8], boff, tys[9]), as_intp(ldb_, tys[10]),
                          builder.bitcast(beta_slot, voidp), ptr(c_, tys[12], coff, tys[13]),
                          as_intp(ldc_, tys[14])])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True)
def gemm(trans_a, trans_b, m, n, k, a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc):
    """Row-major C (m, n) = op(A) (m, k) @ op(B) (k, n) + beta C.

    Each operand is a flat (1-D) array, the element offset of its first entry and its row stride (leading
    dimension): A is stored (m, k) with stride lda, or (k, m) when trans_a. Nothing is checked:
    the caller guarantees the blocks lie inside the arrays. A row-major C is a column-major C^T
    = op(B)^T op(A)^T, so BLAS sees the operands swapped and the same transpose flags."""
    if m == 0 or n == 0:
        return
    if k == 0:  # BLAS would read nothing and scale C by beta; be explicit
        zero = c.dtype.type(0.0)
        for i in range(m):
            for j in range(n):
                c[c_off + i * ldc + j] = zero if beta == 0.0 else c[c_off + i * ldc + j] * beta
        return
    _xxgemm(trans_b, trans_a, n, m, k, b, b_off, ldb, a, a_off, lda, beta, c, c_off, ldc)

