"""fastnn.warmup() / `fastnn warmup`: after it, a new process fits, validates, predicts and
evaluates without compiling anything."""
import os
import subprocess
import sys
import textwrap

import pytest

import fastnn

FIT_AFTER_WARMUP = textwrap.dedent("""
    import numpy as np, fastnn
    from fastnn._kernels.steps import evaluate_batches, train_steps
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 11))
    y = rng.integers(0, 4, 200)
    m = fastnn.MLP([11, 32, 16, 4], activation="tanh", output="softmax", dtype="float64",
                   seed=0)
    fastnn.Trainer(m, fastnn.optim.SGD(lr=0.1, momentum=0.9), batch_size=64, epochs=2,
                   verbose=0).fit(X, y, validation_split=0.2)
    m.predict(X)
    m.evaluate(X, y)
    print(len(train_steps.stats.cache_misses), len(evaluate_batches.stats.cache_misses),
          len(train_steps.stats.cache_hits), len(evaluate_batches.stats.cache_hits))
""")


def test_warmup_command_then_a_fit_in_a_new_process_compiles_nothing(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "fastnn.cli", "warmup", "--dtype", "float64"],
                         env=env, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr
    assert "fastnn: warmup float64: compiled train_steps, evaluate_batches" in out.stderr
    assert f"kernel cache in {tmp_path}" in out.stderr
    # another network, optimizer, activation and data: the same compiled kernels
    fit = subprocess.run([sys.executable, "-c", FIT_AFTER_WARMUP], env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    assert fit.returncode == 0, fit.stderr
    misses_train, misses_eval, hits_train, hits_eval = map(int, fit.stdout.split()[-4:])
    assert (misses_train, misses_eval) == (0, 0)
    assert hits_train == 1 and hits_eval == 1


def test_warmup_reports_each_dtype():
    report = fastnn.warmup(("float32",))
    assert [r["dtype"] for r in report] == ["float32"]
    row = report[0]
    assert row["seconds"] > 0
    # this process may have compiled or loaded them already; each is in at most one list
    assert not set(row["compiled"]) & set(row["loaded"])
    assert set(row["compiled"]) | set(row["loaded"]) <= {"train_steps", "evaluate_batches",
                                                         "fp_mode", "set_fp_mode"}


@pytest.mark.parametrize("bad", ["float16", ["float32", "int8"]])
def test_warmup_rejects_unknown_dtypes(bad):
    with pytest.raises(ValueError, match=r"dtypes: expected values from \('float32', "
                                         r"'float64'\)"):
        fastnn.warmup(bad)


def test_warmup_command_rejects_unknown_dtypes(capsys):
    from fastnn import cli

    assert cli.main(["warmup", "--dtype", "float16"]) == 2
    assert "fastnn: error: dtypes: expected values from" in capsys.readouterr().err
