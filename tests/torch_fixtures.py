"""torch's results as small committed fixtures, in the manner of llm.c (test_gpt2.c checks the C
code against a dump that a PyTorch script wrote): tests/fixtures/make_torch_fixtures.py runs
torch once and saves, for each module in MODULES, what that test module's
`torch_fixture(torch)` returns (inputs and torch's outputs) as tests/fixtures/torch_<module>.npz,
with how it was made under the key "meta".

The tests compare fastnn with the fixture always, and with torch run now as well where torch is
installed (`references`), so a run without torch still checks every result against torch."""
import functools
import json
import pathlib

import numpy as np

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
# the test modules whose torch_fixture(torch) the script saves (tests/test_<name>.py)
MODULES = ("reference", "optim", "optim_torch", "schedules", "io")
REGENERATE = "python tests/fixtures/make_torch_fixtures.py (needs torch)"


def path(module):
    return FIXTURES / f"torch_{module}.npz"


def installed_torch():
    """The torch module, or None where torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


@functools.cache
def load(module):
    """{key: array} of tests/fixtures/torch_<module>.npz (no pickles)."""
    with np.load(path(module), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def meta(module):
    """How the fixture was made: torch version, settings, command."""
    return json.loads(str(load(module)["meta"]))


def get(module, key):
    """One saved array (an input or a torch result)."""
    data = load(module)
    if key not in data:
        raise KeyError(f"{key!r} is not in {path(module).name}: regenerate it with {REGENERATE}")
    return data[key]


def get_json(module, key):
    return json.loads(str(get(module, key)))


def references(module, key, live):
    """[(label, torch's result)] for a test to compare fastnn against: the fixture's `key` (a
    tuple of keys: a tuple of arrays), then `live(torch)` computed now where torch is
    installed (the same function the script saved the fixture from)."""
    saved = (tuple(get(module, k) for k in key) if isinstance(key, tuple)
             else get(module, key))
    refs = [(f"{path(module).name} (torch {meta(module)['torch']})", saved)]
    torch = installed_torch()
    if torch is not None:
        refs.append((f"torch {torch.__version__} now", live(torch)))
    return refs
