"""index build --ray: the local build's shards, index and rankings, filled by Ray workers; a
killed worker is restarted without losing or repeating a passage; a killed driver resumes."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from rag_vqa.indexing import build_index
from rag_vqa.kb import import_kb
from rag_vqa.ray_runtime import RayOptions
from rag_vqa.samples import SAMPLE_KB, question_image, sample_questions
from retriever.index import MultiVectorIndex
from tests.scale_out.scale_helpers import generated_kb, kill_a_worker, restarts

pytestmark = pytest.mark.slow

PASSAGES = 2000
SHARD = 100
# exact: the index assembly is then seconds (plaid's k-means would be most of these tests)
BUILD = {"method": "exact", "batch_size": 32, "shard_size": SHARD, "workers": 0,
         "keep_shards": True}


@pytest.fixture(scope="module")
def big(tmp_path_factory, tiny):
    """A generated KB of a couple of thousand passages and its local build."""
    folder = tmp_path_factory.mktemp("big")
    kb = generated_kb(folder, PASSAGES)
    build_index(kb, tiny, folder / "local", show_progress=False, **BUILD)
    return kb, folder / "local"


def queries(tiny, n=6):
    rng = np.random.default_rng(1)
    words = ["which", "bridge", "tower", "river", "museum", "painting", "bird", "city"]
    texts = [" ".join(rng.choice(words, size=5)) for _ in range(n)]
    return tiny.model.encode_queries(texts, [question_image(q) for q in sample_questions()][:n])


def shard_arrays(index_folder):
    return [np.load(p) for p in sorted((index_folder / "encode").glob("shard-*.npy"))]


def assert_same_build(local, other, tiny):
    """Same ids in the same order, vectors within 1e-5, same top-10, byte-identical index."""
    a, b = MultiVectorIndex.load(local), MultiVectorIndex.load(other)
    assert [a.ids.id_at(r) for r in range(a.num_rows)] == \
        [b.ids.id_at(r) for r in range(b.num_rows)]
    x, y = shard_arrays(local), shard_arrays(other)
    assert len(x) == len(y) > 0
    for p, q in zip(x, y):
        assert p.shape == q.shape and np.abs(p.astype(np.float32) - q.astype(np.float32)).max() \
            <= 1e-5
    q = queries(tiny)
    assert a.search(q, k=10) == b.search(q, k=10)
    assert a.manifest["files"] == b.manifest["files"]  # every data file byte-identical


def shard_infos(index_folder):
    return [json.loads(p.read_text()) for p in sorted((index_folder / "encode")
                                                      .glob("shard-*.json"))]


def test_ray_build_of_the_sample_kb_equals_the_local_build(ray_runtime, tmp_path, tiny):
    kb = tmp_path / "kb"
    import_kb("ret-jsonl", SAMPLE_KB / "passages.jsonl", kb, SAMPLE_KB, progress=False)
    common = {"method": "exact", "batch_size": 4, "shard_size": 16, "workers": 0,
              "keep_shards": True, "show_progress": False}
    local = build_index(kb, tiny, tmp_path / "local", **common)
    on_ray = build_index(kb, tiny, tmp_path / "ray", ray=RayOptions("local", workers=2),
                         **common)
    assert_same_build(tmp_path / "local", tmp_path / "ray", tiny)
    assert on_ray.images == local.images and on_ray.shards == local.shards == 4
    engine = MultiVectorIndex.load(tmp_path / "ray").manifest["metadata"]["build_report"][
        "engine"]
    assert engine["engine"] == "ray" and engine["workers"] == 2 and engine["nodes"] == 1
    assert engine["gpus_per_worker"] == 0 and engine["ray"] == ray_runtime.__version__
    assert engine["rag_vqa"] and engine["torch"] and engine["passages_per_second"] > 0
    assert sum(engine["passages_by_worker"].values()) == local.passages
    # the images were decoded in CPU tasks, not in the encoder actors' processes
    assert sum(engine["passages_by_decoder"].values()) == local.passages
    assert not set(engine["passages_by_decoder"]) & set(engine["passages_by_worker"])
    assert local.engine["engine"] == "local" and local.engine["workers"] == 1


def test_a_killed_worker_is_restarted_and_no_passage_is_lost_or_repeated(ray_runtime, big,
                                                                         tmp_path, tiny):
    kb, local = big
    out = tmp_path / "ray"
    seen: dict[str, tuple[int, int]] = {}   # shard json -> (inode, mtime) when first seen
    killed: list = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            for path in (out / "encode").glob("shard-*.json"):
                if path.name not in seen:
                    stat = path.stat()
                    seen[path.name] = (stat.st_ino, stat.st_mtime_ns)
            if not killed and len(seen) >= 3:
                killed.append((len(seen), kill_a_worker("PassageEncoder")))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        report = build_index(kb, tiny, out, show_progress=False,
                             ray=RayOptions("local", workers=2), **BUILD)
    finally:
        stop.set()
        watcher.join()
    assert killed and killed[0][1] is not None, "no encoder actor was found to kill"
    assert killed[0][0] < PASSAGES // SHARD, "the build had finished before the kill"
    assert restarts(killed[0][1]) >= 1  # Ray restarted it (max_restarts), the build went on
    # every shard written once: never replaced after it first appeared
    for path in (out / "encode").glob("shard-*.json"):
        stat = path.stat()
        assert seen.get(path.name, (stat.st_ino, stat.st_mtime_ns)) == \
            (stat.st_ino, stat.st_mtime_ns), f"{path.name} was written twice"
    # the shards' rows tile the KB: contiguous, each passage in exactly one shard
    infos = shard_infos(out)
    assert [(i["start"], i["stop"]) for i in infos] == \
        [(s, min(s + SHARD, PASSAGES + 1)) for s in range(0, PASSAGES + 1, SHARD)]
    assert sum(report.engine["passages_by_worker"].values()) == PASSAGES + 1
    assert report.images == {k: v for k, v in json.loads(
        (local / "manifest.json").read_text())["metadata"]["build_report"]["images"].items()}
    assert_same_build(local, out, tiny)


def cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "rag_vqa", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_killed_driver_resumes_from_the_finished_shards(ray_runtime, big, tmp_path):
    """The CLI joins the running cluster (--ray HOST:PORT, as `ray job submit` would with
    --ray auto); kill -9 mid-build, run it again: the finished shards are kept."""
    kb, local = big
    address = ray_runtime.get_runtime_context().gcs_address
    out = tmp_path / "ray"
    args = ["index", "build", str(kb), "--retriever", "tiny", "--out", str(out), "--ray",
            address, "--ray-workers", "2", "--batch-size", "32", "--shard-size", str(SHARD),
            "--workers", "0", "--keep-shards", "--method", BUILD["method"]]
    victim = cli(*args)
    deadline = time.time() + 240
    while time.time() < deadline and victim.poll() is None and \
            len(list((out / "encode").glob("shard-*.json"))) < 4:
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    finished = len(list((out / "encode").glob("shard-*.json")))
    assert 4 <= finished < PASSAGES // SHARD, victim.stderr.read()
    assert not (out / "manifest.json").exists()
    again = cli(*args, "--json")
    stdout, stderr = again.communicate(timeout=400)
    assert again.returncode == 0, stderr
    report = json.loads(stdout)
    assert report["shards_resumed"] >= finished and report["engine"]["engine"] == "ray"
    a = json.loads((local / "manifest.json").read_text())["files"]
    b = json.loads((out / "manifest.json").read_text())["files"]
    assert a == b
