"""Benchmark the demo as a person meets it: ``rag-vqa demo --sample`` on the offline `sample`
profile, a fresh photo of each flag (a seed no training run rendered) and "What is the capital
of this country?", sent through Gradio's own client. Measured per question: time to the
evidence, to the first answer token, to the whole answer, and whether the answer is the
capital (read from the country's facts passage) under the official E-VQA exact match. The
baseline is the same pipeline in-process: its ``stream`` (no web in between) and ``answer``
(what a page without streaming would wait for).

    python bench/demo.py               # all 30 flags
    python bench/demo.py --photos 10

One warm-up question per row is not timed. Startup (import, index check, model load) is timed
apart, from an empty or a warm cache as ``--cache`` finds it.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag_vqa.flag_photos import FRESH, render_photo
from rag_vqa.quickstart import answer_is_right
from rag_vqa.samples import FLAGS, sample_passages

QUESTION = "What is the capital of this country?"
SEED = 9001
CAPITAL = re.compile(r"(?:capital|federal city)(?: and largest city)? is ([A-Z][\w' -]*?)"
                     r"(?:[,.;]| and )")


def capitals() -> dict[str, str]:
    """Each country's capital, read from its facts passage (``-0``) in the sample KB."""
    found = {}
    for p in sample_passages():
        match = CAPITAL.search(p.text) if p.passage_id.endswith("-0") else None
        if match:
            found[p.passage_id[:-2]] = match.group(1)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_demo(port: int, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, float]:
    import httpx

    command = [sys.executable, "-m", "rag_vqa", "demo", "--sample", "--profile", "sample",
               "--host", "127.0.0.1", "--port", str(port)]
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    while time.perf_counter() - start < 600:
        if proc.poll() is not None:
            raise SystemExit(f"the demo stopped ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                return proc, time.perf_counter() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the demo did not answer within 600 s")


def ask_demo(client, photo: Path) -> tuple[float, float, float, str]:
    """(evidence, first token, whole) seconds and the final answer text, from one question."""
    from gradio_client import handle_file

    start = time.perf_counter()
    job = client.submit(handle_file(str(photo)), QUESTION, 5, 32, "sample", api_name="/ask")
    evidence = first = None
    for answer, shown in job:
        now = time.perf_counter() - start
        if evidence is None and shown:
            evidence = now
        if first is None and answer and not answer.startswith("…"):
            first = now
    final = job.result()[0]
    whole = time.perf_counter() - start
    # the page shows the answer in bold on its first line, the models and timings below it
    return evidence or whole, first or whole, whole, final.splitlines()[0].strip("*")


def in_process(photos: list[tuple[str, Path]], cache: Path):
    """(stream first token, stream whole, answer whole) per photo, the answers of both
    paths and the countries of their first passages."""
    from rag_vqa.quickstart import sample_pipeline

    pipeline = sample_pipeline("sample", cache / "rag-vqa" / "quickstart")
    rows, answers, firsts = [], {"stream": [], "answer": []}, []
    for _, photo in photos:
        start = time.perf_counter()
        stream = pipeline.stream(photo, QUESTION, k=5)
        first = None
        for _ in stream:
            first = first or time.perf_counter() - start
        streamed = time.perf_counter() - start
        answers["stream"].append(stream.result.answer)
        start = time.perf_counter()
        result = pipeline.answer(photo, QUESTION, k=5)
        rows.append((first or streamed, streamed, time.perf_counter() - start))
        answers["answer"].append(result.answer)
        firsts.append(result.evidence[0].passage_id.rsplit("-", 1)[0])
    return rows, answers, firsts


def summary(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):7.0f} {1000 * max(values):7.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=len(FLAGS), help="flags to ask about")
    parser.add_argument("--cache", type=Path, default=None,
                        help="XDG cache folder for the demo (default: a new, empty one)")
    args = parser.parse_args()
    from gradio_client import Client

    work = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    cache = args.cache or work / "cache"
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "HF_HUB_CACHE": str(cache / "hub")}
    names = list(FLAGS)
    countries = ([names[-1]] + names)[:args.photos + 1]  # the first is the warm-up
    photos = []
    for country in countries:
        photo = work / f"{country}.jpg"
        render_photo(country, SEED, FRESH).save(photo, quality=90)
        photos.append((country, photo))
    expected = capitals()
    port = free_port()
    proc, startup = start_demo(port, env, work / "demo.log")
    try:
        client = Client(f"http://127.0.0.1:{port}/", download_files=False, verbose=False)
        demo = [ask_demo(client, photo) for _, photo in photos]
    finally:
        proc.terminate()
        proc.wait(30)
    os.environ.update(XDG_CACHE_HOME=env["XDG_CACHE_HOME"], HF_HUB_CACHE=env["HF_HUB_CACHE"])
    local, local_answers, firsts = in_process(photos, cache)
    found = sum(c == f for (c, _), f in zip(photos[1:], firsts[1:]))
    right = [answer_is_right(row[3], [expected[c]]) for (c, _), row in zip(photos[1:], demo[1:])]
    hits = {path: sum(answer_is_right(a, [expected[c]]) for (c, _), a in
                      zip(photos[1:], given[1:])) for path, given in local_answers.items()}
    n = len(photos) - 1
    print(f"demo startup (cache {'given' if args.cache else 'empty'}): {startup:.1f} s; "
          f"{n} fresh flag photos, {QUESTION!r}; milliseconds, median and max")
    print(f"{'path':32} {'evidence':>15} {'first token':>15} {'whole answer':>15} {'right':>7}")
    print(f"{'':32} {'p50':>7} {'max':>7} {'p50':>7} {'max':>7} {'p50':>7} {'max':>7}")
    print(f"{'demo (Gradio client, stream)':32} {summary([r[0] for r in demo[1:]])} "
          f"{summary([r[1] for r in demo[1:]])} {summary([r[2] for r in demo[1:]])} "
          f"{sum(right):>3}/{n}")
    print(f"{'in-process stream':32} {'':>15} {summary([r[0] for r in local[1:]])} "
          f"{summary([r[1] for r in local[1:]])} {hits['stream']:>3}/{n}")
    print(f"{'in-process answer() (baseline)':32} {'':>15} {'':>15} "
          f"{summary([r[2] for r in local[1:]])} {hits['answer']:>3}/{n}")
    print(f"right country's passage first (in-process): {found}/{n}")
    wrong = [f"{c}: {row[3]!r} (first passage: {f})" for (c, _), row, ok, f
             in zip(photos[1:], demo[1:], right, firsts[1:]) if not ok]
    if wrong:
        print("wrong answers:", "; ".join(wrong))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
