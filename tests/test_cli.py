"""`fastnn train`: early stopping, --save, --plot, the single test-metric line, flag errors."""
import re
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import cli
from fastnn.data import load_split


@pytest.fixture
def histories(monkeypatch):
    """The History of every fit that cli.main runs."""
    seen = []
    fit = fastnn.Trainer.fit

    def spy(self, *args, **kwargs):
        history = fit(self, *args, **kwargs)
        seen.append(history)
        return history

    monkeypatch.setattr(fastnn.Trainer, "fit", spy)
    return seen


def digits_split():
    """The split and scaling the CLI uses for the default data with its default flags."""
    _, X_va, X_te, _, y_va, y_te, _ = load_split(None, 0.15, 0.15, 0, "auto")
    return X_va, X_te, y_va, y_te


def test_train_prints_the_test_metric_once(capsys):
    pytest.importorskip("sklearn")
    assert cli.main(["train", "--epochs", "2", "--hidden", "16", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(r"test accuracy: 0\.\d{4}\n", out)


def test_dropout_flags_reach_the_saved_model(tmp_path, capsys):
    pytest.importorskip("sklearn")
    path = tmp_path / "m.safetensors"
    assert cli.main(["train", "--epochs", "1", "--hidden", "16,8", "--dropout", "0.25",
                     "--input-dropout", "0.1", "--quiet", "--save", str(path)]) == 0
    model = fastnn.load(path)
    assert model.dropout == (0.25, 0.25) and model.input_dropout == 0.1


def test_patience_restores_best_model_which_is_saved_plotted_and_tested(
        tmp_path, capsys, histories):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    model_path, plot_path = tmp_path / "best.safetensors", tmp_path / "curves.png"
    rc = cli.main(["train", "--epochs", "60", "--patience", "3", "--hidden", "32", "--lr",
                   "0.01", "--quiet", "--save", str(model_path), "--plot", str(plot_path)])
    assert rc == 0
    captured = capsys.readouterr()
    (history,) = histories
    val = history["val_loss"]
    best = int(np.argmin(val))
    assert len(val) == best + 4 < 60  # stopped early, 3 epochs after the best
    assert f"restored the best epoch ({best + 1})" in captured.err

    model = fastnn.load(model_path)
    X_va, X_te, y_va, y_te = digits_split()
    assert model.evaluate(X_va, y_va)[0] == pytest.approx(min(val), rel=1e-6)
    # the one test line is the restored model's accuracy on the test part
    accuracy = np.mean(model.predict_classes(X_te) == y_te)
    assert captured.out == f"test accuracy: {accuracy:.4f}\n"
    with open(plot_path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_regression_data_file_reports_r2(tmp_path, capsys, histories):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.05 * rng.normal(size=300)
    data = tmp_path / "reg.npz"
    np.savez(data, X=X, y=y)
    rc = cli.main(["train", "--data", str(data), "--epochs", "30", "--patience", "5",
                   "--hidden", "16", "--lr", "0.01", "--quiet", "--dtype", "float64"])
    assert rc == 0
    out = capsys.readouterr().out
    match = re.fullmatch(r"test R\^2: (-?\d\.\d{4})\n", out)
    assert match and float(match.group(1)) > 0.9
    (history,) = histories
    assert "val_r2" in history.history and history["val_r2"][-1] > 0.9


@pytest.mark.parametrize("argv, match", [
    (["--patience", "-1"], "argument --patience: expected an integer >= 0, got '-1'"),
    (["--patience", "soon"], "argument --patience: expected an integer >= 0"),
    (["--epochs", "abc"], "argument --epochs: expected an integer >= 1, got 'abc'"),
    (["--dtype", "float16"], "argument --dtype: invalid choice"),
    (["--dropout", "1"], "argument --dropout: must be in [0, 1), got '1'"),
    (["--input-dropout", "x"], "argument --input-dropout: expected a probability in [0, 1)"),
])
def test_bad_flag_value_is_a_one_line_error(argv, match, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", *argv])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastnn train: error: ")
    assert match in lines[0]


def test_patience_without_validation_set_is_refused(capsys):
    assert cli.main(["train", "--patience", "3", "--val-size", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("fastnn: error: --patience needs a validation set: pass "
                            "--val-size > 0\n")


def test_plot_without_matplotlib_fails_before_training(capsys, monkeypatch, histories):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert cli.main(["train", "--plot", "c.png"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastnn: error: --plot:") and "pip install" in err
    assert histories == []


def test_module_entry_point_runs_in_a_fresh_process():
    pytest.importorskip("sklearn")
    result = subprocess.run([sys.executable, "-m", "fastnn.cli", "train", "--epochs", "2",
                             "--quiet"], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"test accuracy: 0\.\d{4}\n", result.stdout)
