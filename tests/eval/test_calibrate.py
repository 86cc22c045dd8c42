"""``eval calibrate`` over a synthetic run folder (questions.jsonl as the report writes it)."""

import json
import math
import random

import pytest

from eval.calibrate import calibrate_run, labelled_rows
from rag_vqa.confidence import Calibration, threshold_for


def write_run(folder, threshold=1.5, n=600, seed=0):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        margin = rng.uniform(0, 2 * threshold)   # the top passage leads by margin
        ok = rng.random() < 1 / (1 + math.exp(-3 * (margin - threshold)))
        rows.append({"data_id": f"q{i}", "status": "ok", "correct": ok,
                     "retrieved": [{"passage_id": "a", "score": 10 + margin},
                                   {"passage_id": "b", "score": 10.0}]})
    rows += [{"data_id": "failed", "status": "failed", "correct": False, "retrieved": []},
             {"data_id": "unscored", "status": "ok", "correct": None, "retrieved": []},
             {"data_id": "abstained", "status": "ok", "correct": False, "abstained": True,
              "retrieved": []}]
    folder.mkdir()
    (folder / "report.json").write_text("{}")
    (folder / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def test_calibrate_a_run_recovers_its_threshold(tmp_path):
    rows = write_run(tmp_path / "run")
    features, correct = labelled_rows(rows)
    assert len(features) == 600            # failed, unscored and abstained left out
    calibration, path = calibrate_run(tmp_path / "run")
    assert path == tmp_path / "run" / "calibration.json"
    assert Calibration.load(path) == calibration
    assert threshold_for(calibration) == pytest.approx(1.5, abs=0.15)
    assert calibration.fitted_on.endswith("run")


def test_cli(tmp_path, capsys):
    from rag_vqa.cli import main

    write_run(tmp_path / "run")
    out = tmp_path / "fit.json"
    assert main(["eval", "calibrate", str(tmp_path / "run"), "--out", str(out), "--plot",
                 str(tmp_path / "rc.png"), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["calibration"] == str(out) and out.is_file() and (tmp_path / "rc.png").is_file()
    assert shown["selective"]["table"][-1]["coverage"] == 1.0
    assert main(["eval", "calibrate", str(tmp_path / "nowhere"), "--json"]) == 2
    assert "does not exist" in json.loads(capsys.readouterr().out)["error"]
