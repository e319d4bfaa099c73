"""Search spaces: lists are grid values, scipy.stats distributions are random draws.

A space is a dict name -> values, as in scikit-learn's GridSearchCV / RandomizedSearchCV:
a list (or tuple) is the values to try, an object with `rvs` (a frozen scipy.stats
distribution such as `loguniform(1e-4, 1e-2)` or `randint(16, 257)`) is drawn from, anything
else is a fixed value. Candidates are numbered in generation order; they are plain dicts of
JSON-able values (numpy scalars become Python numbers).
"""
import itertools
import json
import numbers

import numpy as np


def is_distribution(value):
    return hasattr(value, "rvs") and callable(value.rvs)


def _values(value):
    """The grid values of one entry: a list/tuple as is, a fixed value as a one-item list."""
    if isinstance(value, (list, tuple)):
        if len(value) == 0:
            raise ValueError("a search-space list must hold at least one value")
        return list(value)
    return [value]


def check_space(space):
    if not isinstance(space, dict) or not space:
        raise TypeError(f"space must be a non-empty dict of name -> list of values or "
                        f"scipy.stats distribution, got {space!r}")
    for name, value in space.items():
        if not isinstance(name, str):
            raise TypeError(f"space keys must be parameter names (str), got {name!r}")
        if isinstance(value, np.ndarray):
            raise TypeError(f"space[{name!r}]: pass a list, not a numpy array")
        _values(value)
    return space


def plain(value):
    """value with numpy scalars/arrays and tuples as Python numbers and lists (JSON-able)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def grid(space):
    """Every combination, the first key varying slowest (itertools.product order)."""
    check_space(space)
    if any(is_distribution(v) for v in space.values()):
        names = [k for k, v in space.items() if is_distribution(v)]
        raise ValueError(f"strategy='grid' needs lists of values, but {names} are "
                         f"distributions; use strategy='random' (or 'halving' with "
                         f"n_candidates=)")
    names = list(space)
    return [dict(zip(names, plain(list(combo))))
            for combo in itertools.product(*(_values(space[k]) for k in names))]


def sample(space, n_candidates, seed):
    """n_candidates draws: each distribution by its rvs(random_state=rng), each list by a
    uniform choice, in key order, candidate after candidate, from default_rng(seed)."""
    check_space(space)
    if isinstance(n_candidates, bool) or not isinstance(n_candidates, numbers.Integral) \
            or n_candidates < 1:
        raise ValueError(f"n_candidates must be a positive integer, got {n_candidates!r}")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(n_candidates)):
        params = {}
        for name, value in space.items():
            if is_distribution(value):
                params[name] = plain(value.rvs(random_state=rng))
            else:
                values = _values(value)
                params[name] = plain(values[int(rng.integers(len(values)))])
        out.append(params)
    return out


def describe(space):
    """A canonical JSON string of the space (distributions by name, arguments and keywords),
    written into the journal's header so that a resumed search can tell it is the same."""
    def one(value):
        if is_distribution(value):
            dist = getattr(value, "dist", value)
            return {"distribution": getattr(dist, "name", type(dist).__name__),
                    "args": plain(list(getattr(value, "args", ()))),
                    "kwds": plain(dict(getattr(value, "kwds", {})))}
        return plain(value)
    return json.dumps({k: one(v) for k, v in space.items()}, sort_keys=True, default=repr)
