"""`eval run` without a TOML: the pipeline flags of `ask` (profile, models, search knobs) land
in the run's configuration through the one override path (rag_vqa.cli_pipeline)."""

import contextlib
import io
import json

from rag_vqa.samples import SAMPLE_KB
from tests.eval.test_eval_cli import config, in_process  # noqa: F401 - the module's fixture


def _run(*args):
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        return in_process(["eval", "run", *args]), err.getvalue()


def test_quick_run_from_flags(tmp_path, config):  # noqa: F811
    index = next(config.parent.glob("index-*"))
    out = tmp_path / "run"
    code, err = _run("--dataset", "ret-jsonl", "--questions", str(SAMPLE_KB / "questions.jsonl"),
                     "--images", str(SAMPLE_KB), "--out", str(out), "--profile", "tiny",
                     "--index", str(index), "--nprobe", "3", "--ndocs", "77", "--k", "3",
                     "--retrieval-only")
    assert code == 0, err
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["profile"] == "tiny" and run["config"]["k"] == 3
    assert run["config"]["index"]["search"] == {"nprobe": 3, "ndocs": 77}
    assert run["identity"]["k"] == 3
    for name in ("report.json", "report.md", "report.html", "questions.jsonl"):
        assert (out / name).is_file()
    # the knobs are part of the run: other ones on the same folder are refused
    code, err = _run("--dataset", "ret-jsonl", "--questions", str(SAMPLE_KB / "questions.jsonl"),
                     "--images", str(SAMPLE_KB), "--out", str(out), "--profile", "tiny",
                     "--index", str(index), "--nprobe", "4", "--k", "3", "--retrieval-only")
    assert code == 2 and "nprobe" in err


def test_bad_knob_exits_2(tmp_path):
    code, err = _run("--dataset", "ret-jsonl", "--questions", str(SAMPLE_KB / "questions.jsonl"),
                     "--images", str(SAMPLE_KB), "--out", str(tmp_path), "--nprobe", "0")
    assert code == 2 and "--nprobe" in err
