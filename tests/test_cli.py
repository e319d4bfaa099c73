"""The command line: `fastnn train` (early stopping, --save, --plot, the single test-metric line,
text labels), `fastnn predict` and `fastnn evaluate` on saved models, flag and data errors."""
import pathlib
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
        history.trained_model = self.model  # the in-process model, for comparisons
        seen.append(history)
        return history

    monkeypatch.setattr(fastnn.Trainer, "fit", spy)
    return seen


def digits_split():
    """The split the CLI uses for the default data with its default flags (raw rows: the
    saved model standardizes them itself)."""
    _, X_va, X_te, _, y_va, y_te = load_split(None, 0.15, 0.15, 0, "auto")[:6]
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


# --------------------------------------------------------------------------- named classes
SPECIES = ("emu", "cat", "dog")  # not in sorted order: classes_ must come out sorted


def animal_table(n=40, seed=0):
    """Features on very different scales and far from 0 (so that a model applied to raw rows
    without its standardization predicts garbage), three named classes."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(SPECIES, n)
    centres = {"emu": [0, 0, 0], "cat": [3, 0, 3], "dog": [0, 3, -3]}
    Z = np.array([centres[s] for s in labels]) + rng.normal(size=(3 * n, 3))
    X = Z * [1e3, 1.0, 1e-3] + [5e4, -20.0, 7.0]
    order = rng.permutation(3 * n)
    return X[order], labels[order]


def write_csv(path, X, labels=None, names=("mass", "speed", "size"), label_name="species"):
    with open(path, "w") as f:
        f.write(",".join(names + ((label_name,) if labels is not None else ())) + "\n")
        for i, row in enumerate(X):
            cells = [repr(float(v)) for v in row]
            f.write(",".join(cells + ([str(labels[i])] if labels is not None else [])) + "\n")


def read_column(path_or_text):
    text = (path_or_text.read_text() if hasattr(path_or_text, "read_text") else path_or_text)
    lines = text.splitlines()
    return lines[0], lines[1:]


def test_text_labels_trained_saved_and_predicted_from_raw_rows(tmp_path, capsys, histories):
    X, labels = animal_table()
    data, model_path = tmp_path / "animals.csv", tmp_path / "m.safetensors"
    write_csv(data, X, labels)
    assert cli.main(["train", "--data", str(data), "--hidden", "8", "--epochs", "15",
                     "--lr", "0.02", "--quiet", "--save", str(model_path)]) == 0
    assert re.fullmatch(r"test accuracy: (0\.\d|1\.0)\d{3}\n", capsys.readouterr().out)
    raw = np.random.default_rng(1).permutation(X)[:25]
    rows = tmp_path / "raw.csv"
    write_csv(rows, raw)  # features only, as a user has them
    assert cli.main(["predict", str(model_path), "--data", str(rows), "--output",
                     str(tmp_path / "preds.csv")]) == 0
    header, predicted = read_column(tmp_path / "preds.csv")
    assert header == "prediction" and len(predicted) == 25

    # in process: the model that was trained, its network alone on rows standardized here
    # with the training part's statistics, its outputs named by the sorted species
    split = load_split(data, 0.15, 0.15, 0, "auto")
    mean, std = split.X_train.mean(axis=0), split.X_train.std(axis=0)
    net = histories[0].trained_model.copy().set_input_standardization(None, None)
    net.classes_ = None
    expected = np.array(sorted(SPECIES))[net.predict_classes((raw - mean) / std)]
    assert predicted == expected.tolist()
    assert len(set(predicted)) == 3
    # the file carries the scaling: the network on raw rows would say something else
    assert np.array(sorted(SPECIES))[net.predict_classes(raw)].tolist() != predicted
    model = fastnn.load(model_path)
    assert model.classes_.tolist() == sorted(SPECIES)
    np.testing.assert_array_equal(model.input_mean, mean)
    np.testing.assert_allclose(model.input_std, std, rtol=4 * np.finfo(float).eps)


def test_predict_proba_and_evaluate_agree_with_the_model(tmp_path, capsys):
    X, labels = animal_table(seed=2)
    data, model_path = tmp_path / "animals.csv", tmp_path / "m.safetensors"
    write_csv(data, X, labels)
    assert cli.main(["train", "--data", str(data), "--hidden", "8", "--epochs", "10",
                     "--quiet", "--save", str(model_path)]) == 0
    capsys.readouterr()
    model = fastnn.load(model_path)
    # labelled rows are fine too: the label column is dropped
    assert cli.main(["predict", str(model_path), "--data", str(data), "--proba"]) == 0
    header, lines = read_column(capsys.readouterr().out)
    assert header == "cat,dog,emu"
    proba = np.array([[float(c) for c in line.split(",")] for line in lines], np.float32)
    np.testing.assert_array_equal(proba, model.predict(X))  # float32's shortest repr, exact
    assert cli.main(["evaluate", str(model_path), "--data", str(data)]) == 0
    captured = capsys.readouterr()
    accuracy = np.mean(model.predict_labels(X) == labels)
    assert captured.out == f"test accuracy: {accuracy:.4f}\n"
    assert f"{len(X)} samples, loss=" in captured.err


def test_label_column_by_name_or_index_and_integer_classes(tmp_path, capsys):
    X, labels = animal_table(n=20)
    codes = np.array([{"emu": 5, "cat": -1, "dog": 2}[s] for s in labels])
    path = tmp_path / "t.csv"
    with open(path, "w") as f:  # the label in the middle
        f.write("mass,code,speed,size\n")
        f.writelines(f"{float(row[0])!r},{code},{float(row[1])!r},{float(row[2])!r}\n"
                     for row, code in zip(X, codes))
    for column in ("code", "1", "-3"):
        model_path = tmp_path / f"m{column}.safetensors"
        assert cli.main(["train", "--data", str(path), "--label-column", column, "--epochs",
                         "2", "--hidden", "4", "--save", str(model_path)]) == 0
        err = capsys.readouterr().err
        assert "Total params: 31" in err and "Classes (3): [-1, 2, 5]" in err  # summary
        model = fastnn.load(model_path)
        assert model.layer_sizes == (3, 4, 3) and model.classes_.tolist() == [-1, 2, 5]
    assert cli.main(["train", "--data", str(path), "--label-column", "colour"]) == 2
    assert "no column named 'colour'" in capsys.readouterr().err


def test_npz_text_labels(tmp_path, capsys):
    X, labels = animal_table(n=15)
    path = tmp_path / "t.npz"
    np.savez(path, X=X, y=labels)
    model_path = tmp_path / "m.safetensors"
    assert cli.main(["train", "--data", str(path), "--epochs", "2", "--hidden", "4", "--quiet",
                     "--save", str(model_path)]) == 0
    assert fastnn.load(model_path).classes_.tolist() == ["cat", "dog", "emu"]
    assert cli.main(["evaluate", str(model_path), "--data", str(path)]) == 0
    assert capsys.readouterr().out.startswith("test accuracy: ")


@pytest.fixture
def animal_model(tmp_path, capsys):
    X, labels = animal_table(n=10)
    data, model_path = tmp_path / "animals.csv", tmp_path / "m.safetensors"
    write_csv(data, X, labels)
    assert cli.main(["train", "--data", str(data), "--epochs", "1", "--hidden", "4", "--quiet",
                     "--save", str(model_path)]) == 0
    capsys.readouterr()
    return model_path, X, labels


@pytest.mark.parametrize("command, content, match", [
    ("predict", "a,b\n1,2\n",
     r"2 columns, but the model takes 3 features \(a file may have 3 columns, or 4 with a label"),
    ("predict", "a,b,c,d,e\n1,2,3,4,5\n", "5 columns, but the model takes 3 features"),
    ("evaluate", "a,b,c,d,e\n1,2,3,4,cat\n",
     "4 feature columns besides the label, but the model takes 3"),
    ("evaluate", "a,b,c,d\n1,2,3,fox\n4,5,6,cat\n",
     "unknown class 'fox': the model knows the classes 'cat', 'dog', 'emu'"),
    ("evaluate", "a,b,c,d\n1,2,3,x\n", "unknown class 'x'"),
    ("predict", "a,b,c\n1,zz,3\n", "non-numeric cell 'zz' at line 2, column 2"),
])
def test_predict_and_evaluate_errors_are_one_line_with_status_2(tmp_path, capsys, animal_model,
                                                                command, content, match):
    model_path = animal_model[0]
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert cli.main([command, str(model_path), "--data", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastnn: error: "), captured.err
    assert re.search(match, lines[0]), lines[0]


@pytest.mark.parametrize("argv", [["predict"], ["predict", "m.safetensors"],
                                  ["evaluate", "m.safetensors"], ["predict", "--data", "x.csv"]])
def test_predict_and_evaluate_need_a_model_and_data(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fastnn {argv[0]}: error: ") and len(err.splitlines()) == 1


def test_predict_with_a_model_file_from_before_class_names(tmp_path, capsys):
    fixtures = pathlib.Path(__file__).parent / "fixtures"
    ref = np.load(fixtures / "v1_predictions.npz")
    path = tmp_path / "rows.csv"
    np.savetxt(path, ref["X"], delimiter=",")
    model = str(fixtures / "v1_softmax_float32.safetensors")
    assert cli.main(["predict", model, "--data", str(path)]) == 0
    header, lines = read_column(capsys.readouterr().out)
    assert header == "prediction" and lines == [str(c) for c in ref["softmax_float32_classes"]]
    assert cli.main(["predict", model, "--data", str(path), "--proba"]) == 0
    header, lines = read_column(capsys.readouterr().out)
    assert header == "0,1,2" and len(lines) == len(ref["X"])
    regression = str(fixtures / "v1_identity_float64.safetensors")
    assert cli.main(["predict", regression, "--data", str(path)]) == 0
    header, lines = read_column(capsys.readouterr().out)
    assert header == "prediction_0,prediction_1"
    np.testing.assert_allclose([[float(c) for c in line.split(",")] for line in lines],
                               ref["identity_float64"], rtol=0, atol=1e-13)
    assert cli.main(["predict", regression, "--data", str(path), "--proba"]) == 2
    assert "--proba needs a classifier" in capsys.readouterr().err
