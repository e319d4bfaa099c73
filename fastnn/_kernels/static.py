"""Compile-time choices: an int whose value Numba sees in the argument's type.

The optimizer rule and the loss are small integer codes. Passed as plain ints they are run-time
branches of one compiled loop, and every fit compiles every rule and every loss (a cold start
paid for code it never runs). Wrapped as `Static(code)` the code becomes part of the argument
type (`StaticInt(code)`, also inside a NamedTuple field): a kernel then compiles, and caches,
one version per choice with only that choice's code, picked while typing (`choose`). Plain ints
still work everywhere: the kernels then keep the run-time branches (fastnn.optim's Python-side
step, the tests).
"""
from numba import types
from numba.core import cgutils
from numba.extending import NativeValue, models, register_model, typeof_impl, unbox


class Static(int):
    """An int code that compiled kernels specialize on (see the module docstring)."""
    __slots__ = ()

    def __repr__(self):
        return f"Static({int(self)})"


class StaticInt(types.Type):
    """The Numba type of a Static value: the value is the type, nothing travels at run time."""

    def __init__(self, value):
        self.value = int(value)
        super().__init__(name=f"StaticInt({self.value})")


@typeof_impl.register(Static)
def _typeof_static(val, c):
    return StaticInt(val)


register_model(StaticInt)(models.OpaqueModel)


@unbox(StaticInt)
def _unbox_static(typ, obj, c):
    return NativeValue(cgutils.get_null_value(c.context.get_value_type(typ)))


def choose(code, impls, unknown):
    """Typing-time selection for an @overload: `impls[code.value]` when `code` (a Numba type)
    is a StaticInt (`unknown` for a value not in impls), else None: the caller's run-time
    branches then."""
    if isinstance(code, StaticInt):
        return impls.get(code.value, unknown)
    return None
