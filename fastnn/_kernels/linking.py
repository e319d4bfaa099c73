"""Link a kernel's call tree once, at the outermost compile (a cold start's largest cost).

Numba compiles every @njit function that a kernel calls into a library of its own, and each
library links in its callees' libraries and optimizes and generates machine code for the whole
linked module again: bias_activation_forward was optimized and code-generated once for itself
and again inside output_epilogue, layer_forward, network_forward and train_steps. A cold start
paid about (depth of the call tree) x (its size) in LLVM time.

Here a fastnn kernel compiled as a callee of another fastnn compile links nothing itself: its
library is optimized and generated alone and hands its callees on to its caller, so only the
outermost compile (the one that a Python call started) links, optimizes and generates the whole
tree, once. What runs is that outermost library, as before (LLVM inlines across the whole tree
there, bottom-up as it would in one module).

A callee compiled this way calls its own callees by symbol inside this process's JIT, so it is
never written to Numba's cache on its own (check_cachable); the outermost kernel is, with its
whole tree linked in, and later processes load only that. Called from Python in the same
process, such a callee still works (its callees' code is in the JIT).

Every hook is installed only if Numba's internals look the way they were written for (numba
0.59-0.68), and leaves compiles that did not start in a fastnn CPU kernel alone.
"""
import threading

_state = threading.local()  # depth: compiles in progress on this thread; ours: the outermost
#                             one is a fastnn CPU kernel


def _is_fastnn_cpu(dispatcher):
    module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
    return module.startswith("fastnn._kernels") and not module.startswith("fastnn._kernels.cuda")


def _nested():
    """Whether the library being finalized belongs to a callee inside a fastnn kernel's
    compile (rather than to the compile that a Python call started)."""
    return getattr(_state, "depth", 0) > 1 and getattr(_state, "ours", False)


def install():
    """Install the hooks (see the module docstring); returns whether they are in place."""
    from numba.core import caching, codegen, event
    from numba.core.compiler_lock import require_global_compiler_lock

    library = codegen.CPUCodeLibrary
    needed = ("finalize", "add_linking_library", "_optimize_final_module",
              "_finalize_final_module", "_verify_declare_only_symbols", "_raise_if_finalized")
    if (getattr(library, "_fastnn_linking", False)
            or not all(hasattr(library, n) for n in needed)
            or not hasattr(caching.CompileResultCacheImpl, "check_cachable")):
        return getattr(library, "_fastnn_linking", False)

    class _Depth(event.Listener):
        def on_start(self, ev):
            depth = getattr(_state, "depth", 0)
            if depth == 0:
                _state.ours = _is_fastnn_cpu((ev.data or {}).get("dispatcher"))
            _state.depth = depth + 1

        def on_end(self, ev):
            _state.depth = max(0, getattr(_state, "depth", 1) - 1)

    numba_finalize = library.finalize
    numba_add = library.add_linking_library
    numba_verify = library._verify_declare_only_symbols
    numba_cachable = caching.CompileResultCacheImpl.check_cachable

    def finalize(self):
        if not _nested():
            return numba_finalize(self)
        # numba's finalize without the linking: the callees travel up to the caller instead
        require_global_compiler_lock()
        self._raise_if_finalized()
        callees = []
        for lib in self._linking_libraries:
            if lib not in callees:
                callees.append(lib)
                self._reload_init.update(lib._reload_init)
        self._fastnn_callees = callees
        self._optimize_final_module()
        self._final_module.verify()
        self._finalize_final_module()
        return None

    def add_linking_library(self, lib):
        numba_add(self, lib)
        self._linking_libraries.extend(getattr(lib, "_fastnn_callees", ()))

    def verify_declare_only_symbols(self):
        if getattr(self, "_fastnn_callees", None) is None:  # (ours declare their callees)
            numba_verify(self)

    def check_cachable(self, cres):
        if getattr(cres.library, "_fastnn_callees", None) is not None:
            return False
        return numba_cachable(self, cres)

    event.register("numba:compile", _Depth())
    library.finalize = finalize
    library.add_linking_library = add_linking_library
    library._verify_declare_only_symbols = verify_declare_only_symbols
    caching.CompileResultCacheImpl.check_cachable = check_cachable
    library._fastnn_linking = True
    return True
