"""eval run --ray: the local run's predictions, written by the driver as they come back; a
local run resumed on Ray; a killed pipeline worker restarted without losing or repeating a
question."""

import threading
import time

import pytest

from eval.runner import RunSpec, read_predictions, run_eval
from rag_vqa.quickstart import sample_pipeline
from rag_vqa.ray_runtime import RayOptions
from tests.eval.evaldata import infoseek_files
from tests.scale_out.scale_helpers import kill_a_worker, restarts

pytestmark = pytest.mark.slow

QUESTIONS = 60


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The tiny pipeline over the sample KB, 60 InfoSeek questions, and their local run."""
    folder = tmp_path_factory.mktemp("eval")
    pipe = sample_pipeline("tiny", folder / "cache", k=4, generator={"max_new_tokens": 6})
    files = infoseek_files(folder, repeat=QUESTIONS // 6)
    common = {"dataset": "infoseek", "questions": str(files["questions"]),
                  "images": str(files["images"]), "qtypes": str(files["qtypes"]), "batch_size": 2}
    run_eval(RunSpec(out=str(folder / "local"), **common), pipe, show_progress=False)
    return pipe, common, read_predictions(folder / "local" / "predictions.jsonl")


def stable(records):
    return [{k: v for k, v in r.items() if k != "timings"} for r in records]


def test_a_local_run_resumed_on_ray_gives_the_local_predictions(ray_runtime, setup, tmp_path):
    pipe, common, local = setup
    out = str(tmp_path / "run")
    first = run_eval(RunSpec(out=out, limit=30, **common), pipe, show_progress=False)
    assert first.answered == 30
    summary = run_eval(RunSpec(out=out, **common), pipe, show_progress=False,
                       ray=RayOptions("local", workers=2))
    assert (summary.already_done, summary.answered, summary.failed) == (30, QUESTIONS - 30, 0)
    assert stable(read_predictions(tmp_path / "run" / "predictions.jsonl")) == stable(local)
    # the identity check of a resume is the same: a run of other inputs is refused
    with pytest.raises(ValueError, match="retrieval_only"):
        run_eval(RunSpec(out=out, retrieval_only=True, **common), pipe, show_progress=False,
                 ray=RayOptions("local", workers=2))


def test_a_killed_pipeline_worker_is_restarted_and_every_question_answered_once(
        ray_runtime, setup, tmp_path):
    pipe, common, local = setup
    predictions = tmp_path / "run" / "predictions.jsonl"
    killed: list = []
    stop = threading.Event()

    def watch():
        while not stop.is_set() and not killed:
            if predictions.exists() and predictions.read_bytes().count(b"\n") >= 10:
                killed.append((predictions.read_bytes().count(b"\n"),
                               kill_a_worker("PipelineWorker")))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        summary = run_eval(RunSpec(out=str(tmp_path / "run"), **common), pipe,
                           show_progress=False, ray=RayOptions("local", workers=2))
    finally:
        stop.set()
        watcher.join()
    assert killed and killed[0][1] is not None and killed[0][0] < QUESTIONS
    assert restarts(killed[0][1]) >= 1
    assert summary.answered == QUESTIONS and summary.complete
    records = read_predictions(predictions)
    assert len(records) == len({r["data_id"] for r in records}) == QUESTIONS
    assert stable(records) == stable(local)
