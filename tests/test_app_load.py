"""The demo under load, on the loopback interface: 20 concurrent sessions x 5 rounds, each
session its own gradio_client (own cookie), uploading a fresh photo, streaming the answer and
downloading every evidence thumbnail in it. All 100 questions must succeed, within a bounded
time; latency percentiles are printed (pytest -s) and written to test-artifacts/demo_load.json."""

from __future__ import annotations

import io
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from rag_vqa.samples import photo_of_flag, sample_questions
from tests.test_app_process import REPO, demo_process
from tests.test_app_server import thumbnails_in

gradio_client = pytest.importorskip("gradio_client")
pytestmark = pytest.mark.slow  # about 35 s here: 10 s to start, then the 100 questions

SESSIONS, ROUNDS, K = 20, 5, 5
TIME_LIMIT_S = 120          # for all 100 questions; about 20 s on a 2-core machine


def _check_download(http: httpx.Client, url: str) -> None:
    resp = http.get(url)
    assert resp.status_code == 200, f"{url}: HTTP {resp.status_code}"
    declared = int(resp.headers["content-length"])
    assert declared == len(resp.content), f"{url}: {len(resp.content)} of {declared} bytes"
    with Image.open(io.BytesIO(resp.content)) as image:
        image.load()


def _session(url: str, index: int, photos: Path, latencies: list[float],
             failures: list[str], lock: threading.Lock) -> None:
    """One visitor: ROUNDS questions one after the other, each with a new photo."""
    try:
        c = gradio_client.Client(f"{url}/", download_files=False, verbose=False)
    except Exception as exc:  # noqa: BLE001 - every failure is counted, none is fatal
        with lock:
            failures.extend(f"session {index}: no client: {exc!r}" for _ in range(ROUNDS))
        return
    questions = sample_questions()
    with httpx.Client(cookies=c.cookies, timeout=30) as http:
        for round_ in range(ROUNDS):
            q = questions[(index + round_) % len(questions)]
            photo = photos / f"s{index:02d}-r{round_}.jpg"
            photo_of_flag(q.country, seed=1000 * index + round_).save(photo, quality=90)
            try:
                start = time.perf_counter()
                job = c.submit(gradio_client.handle_file(str(photo)), q.question, K, 8, "tiny",
                               api_name="/ask")
                final = job.result(timeout=90)
                elapsed = time.perf_counter() - start
                assert "meaningless" in final[0] and "Error" not in final[0], final[0]
                evidence = {u[1] for u in job.outputs() if isinstance(u[1], str) and u[1]}
                assert len(evidence) == 1, evidence  # one evidence list per question
                shown = thumbnails_in(evidence.pop())
                assert len(shown) == K, shown
                for path in dict.fromkeys(shown):
                    _check_download(http, f"{url}/gradio_api/file={path}")
                with lock:
                    latencies.append(elapsed)
            except Exception as exc:  # noqa: BLE001
                with lock:
                    failures.append(f"session {index} round {round_}: {exc!r}")


def test_twenty_sessions_five_rounds_no_failures(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    with demo_process(tmp_path / "demo") as run:
        latencies: list[float] = []
        failures: list[str] = []
        lock = threading.Lock()
        start = time.perf_counter()
        with ThreadPoolExecutor(SESSIONS) as pool:
            for index in range(SESSIONS):
                pool.submit(_session, run.url, index, photos, latencies, failures, lock)
        total = time.perf_counter() - start
        assert run.proc.poll() is None, run.output()
    p50, p95 = (float(np.percentile(latencies, q)) for q in (50, 95)) if latencies else (0, 0)
    report = {"sessions": SESSIONS, "rounds": ROUNDS, "questions": SESSIONS * ROUNDS,
              "failed": len(failures), "total_s": round(total, 2),
              "questions_per_s": round(len(latencies) / total, 2),
              "latency_s": {"p50": round(p50, 3), "p95": round(p95, 3),
                            "max": round(max(latencies, default=0), 3),
                            "mean": round(statistics.fmean(latencies), 3) if latencies else 0},
              "failures": failures[:20]}
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    (REPO / "test-artifacts" / "demo_load.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\ndemo load: {len(latencies)}/{SESSIONS * ROUNDS} ok in {total:.1f} s; latency p50 "
          f"{p50:.2f} s, p95 {p95:.2f} s, max {report['latency_s']['max']:.2f} s")
    assert failures == [], f"{len(failures)} of {SESSIONS * ROUNDS} failed: {failures[:5]}"
    assert total < TIME_LIMIT_S
