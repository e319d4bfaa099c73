"""`fastnn search` on the command line."""
import json

import numpy as np
import pytest

pytest.importorskip("sklearn")  # the default data set is scikit-learn's digits

from fastnn import cli


def test_search_prints_table_choice_and_one_test_score(capsys, tmp_path):
    argv = ["search", "--hidden", "16,32-16", "--lr", "1e-3,1e-2", "--batch-size", "64",
            "--max-epochs", "4", "--quiet", "--dir", str(tmp_path), "--jobs", "2"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["id", "params", "status"]
    rows = [line for line in out[1:5]]
    assert len(rows) == 4 and "hidden=[32, 16]" in rows[2]
    assert out[5].startswith("chosen: candidate ")
    assert out[6].startswith("test: loss ") and "accuracy" in out[6]
    records = [json.loads(x) for x in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records].count("test") == 1
    # rerun: resumed from the journal, nothing retrained, the test score not taken again
    assert cli.main(argv) == 0
    out2 = capsys.readouterr().out.splitlines()
    assert out2[5] == out[5] and out2[6].startswith("test (scored earlier, data ")


@pytest.mark.parametrize("argv, match", [
    (["--hidden", "16,x"], "comma list"),
    (["--lr", ""], "at least one"),
    (["--strategy", "bayes"], "invalid choice"),
])
def test_bad_values_are_one_line_errors(argv, match, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["search", *argv])
    assert exc.value.code == 2 and match in capsys.readouterr().err


def test_search_errors_are_reported(capsys):
    assert cli.main(["search", "--val-size", "0", "--quiet"]) == 2
    assert "--val-size" in capsys.readouterr().err


def test_search_on_a_csv_with_named_labels(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    names = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    lines = ["label,a,b,c"] + [f"{n},{a:.6f},{b:.6f},{c:.6f}" for n, (a, b, c) in zip(names, X)]
    path = tmp_path / "d.csv"
    path.write_text("\n".join(lines) + "\n")
    argv = ["search", "--data", str(path), "--label-column", "label", "--hidden", "4,8",
            "--lr", "1e-2", "--max-epochs", "5", "--quiet"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[3].startswith("chosen") and out[4].startswith("test: loss")


def test_search_dropout_from_the_command_line(capsys):
    argv = ["search", "--hidden", "16-16", "--dropout", "0,0.5-0.2", "--input-dropout",
            "0.1", "--batch-size", "64", "--max-epochs", "2", "--quiet"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert "dropout=0.0, input_dropout=0.1" in out[1]
    assert "dropout=[0.5, 0.2], input_dropout=0.1" in out[2]
    for bad, match in (("1.0", "expected a comma list of dropout rates, got '1.0'"),
                       ("0.2-x", "dropout rates")):
        with pytest.raises(SystemExit):
            cli.main(["search", "--dropout", bad])
        assert match in capsys.readouterr().err
