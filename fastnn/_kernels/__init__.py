"""Compiled kernels (Numba, cache=True everywhere).

Numba keys a cached function on its own source file only, but `train_steps` inlines kernels
from the sibling modules: after an edit to dense.py or optim.py its cached machine code would
still run the old kernel. So every kernel's cache entry is stamped with a hash of ALL kernel
sources: changing any of them recompiles everything once.
"""
import hashlib
import pathlib

_KERNEL_DIR = pathlib.Path(__file__).resolve().parent


def _tree_stamp():
    h = hashlib.sha256()
    for path in sorted(_KERNEL_DIR.rglob("*.py")):
        h.update(path.relative_to(_KERNEL_DIR).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _install_tree_stamped_cache():
    try:
        from numba.core import caching
    except ImportError:  # pragma: no cover - numba always has it today
        return
    stamp = _tree_stamp()

    def stamped(base):
        class TreeStampedLocator(base):
            @classmethod
            def from_function(cls, py_func, py_file):
                try:
                    inside = pathlib.Path(py_file).resolve().is_relative_to(_KERNEL_DIR)
                except (OSError, ValueError):
                    inside = False
                return super().from_function(py_func, py_file) if inside else None

            def get_source_stamp(self):
                return stamp

        TreeStampedLocator.__name__ = "FastnnTree" + base.__name__
        return TreeStampedLocator

    classes = caching.CacheImpl._locator_classes
    if any(c.__name__.startswith("FastnnTree") for c in classes):
        return
    bases = [getattr(caching, n, None) for n in
             ("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator")]
    # ours go first, in numba's own order of preference; other code is untouched
    classes[:0] = [stamped(b) for b in bases if b is not None]


try:
    _install_tree_stamped_cache()
except Exception:  # noqa: BLE001, S110 - a numba internals change must not break the import
    pass

