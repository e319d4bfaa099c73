"""Where a cold start's compile time goes: per-kernel CPU seconds of `fastnn ...` (default
`fastnn train --quiet`, the README's first command) in this process, from Numba's compile
events.

    NUMBA_CACHE_DIR=$(mktemp -d) python benchmarks/profile_compile.py [train --quiet ...]

Use an empty NUMBA_CACHE_DIR (or delete fastnn's __pycache__ folders) to see a cold start.
Times are the main thread's CPU time (time.thread_time), which other processes on a shared
machine disturb far less than wall time. `self` excludes the kernels compiled while compiling
this one (its callees, each compiled and cached on its own); `incl` includes them. `n` counts
compiled versions: one per distinct argument types, literal constants and static.Static codes
included.
"""
import collections
import sys
import time

from numba.core import event

_stack = []
_self = collections.defaultdict(float)
_incl = collections.defaultdict(float)
_count = collections.Counter()


class _Timer(event.Listener):
    def on_start(self, ev):
        f = ev.data["dispatcher"].py_func
        _stack.append([f"{f.__module__.replace('fastnn._kernels.', '')}.{f.__name__}",
                       time.thread_time(), 0.0])

    def on_end(self, ev):
        name, t0, children = _stack.pop()
        dt = time.thread_time() - t0
        _incl[name] += dt
        _self[name] += dt - children
        _count[name] += 1
        if _stack:
            _stack[-1][2] += dt


def main(argv):
    event.register("numba:compile", _Timer())
    t = time.thread_time()
    import fastnn  # noqa: F401 - what importing it compiles, if anything
    from fastnn import cli

    imported = time.thread_time() - t
    at_import = sum(_self.values())
    t = time.thread_time()
    rc = cli.main(argv or ["train", "--quiet"])
    ran = time.thread_time() - t
    out = sys.stderr
    print(f"import fastnn {imported:.2f} s CPU ({at_import:.2f} s of it compiling); "
          f"the command {ran:.2f} s CPU", file=out)
    print(f"{'kernel':40s} {'n':>3s} {'self s':>8s} {'incl s':>8s}", file=out)
    for name, seconds in sorted(_self.items(), key=lambda kv: -kv[1]):
        print(f"{name:40s} {_count[name]:>3d} {seconds:8.2f} {_incl[name]:8.2f}", file=out)
    print(f"{'all compiles':40s} {sum(_count.values()):>3d} {sum(_self.values()):8.2f}", file=out)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
