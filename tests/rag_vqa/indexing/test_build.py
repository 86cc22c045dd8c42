"""rag-vqa index build: KB -> shards -> index, resumable, with image problems counted."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from rag_vqa.indexing import build_index
from rag_vqa.indexing.shards import PlanMismatch
from rag_vqa.kb import PassageStore
from rag_vqa.loading import load_retriever
from retriever.index import MultiVectorIndex
from tests.helpers import ret_jsonl_kb


def make_kb(tmp_path, n=40, seed=0):
    """A ReT-JSONL knowledge base: most passages with images, some missing, one broken."""
    return ret_jsonl_kb(tmp_path, n, seed=seed)


@pytest.fixture(scope="module")
def tiny():
    return load_retriever("tiny")


def test_build_encodes_every_passage_like_the_model_does(tmp_path, tiny):
    kb, images = make_kb(tmp_path)
    report = build_index(kb, tiny, tmp_path / "index", method="exact", batch_size=4,
                         shard_size=16, workers=0, keep_shards=True)
    assert report.passages == 41 and report.shards == 3 and report.shards_resumed == 0
    assert report.images == {"ok": 10, "missing": 10, "none": 20, "broken": 1}
    assert any(p["passage_id"] == "P-broken" for p in report.image_problems)
    index = MultiVectorIndex.load(tmp_path / "index")
    assert len(index) == 41
    meta = index.manifest["metadata"]
    assert meta["retriever"]["config_sha256"] == tiny.model.config_fingerprint()
    assert meta["build_report"]["images"]["broken"] == 1
    with PassageStore.open(kb) as store:
        passages = [p for _, p in store.iter_rows()]
        expected_images = [store.resolve_image(p) for p in passages]
    # features equal encode_documents, broken/missing images encoded text-only
    expected = tiny.model.encode_documents([p.text for p in passages],
                                           [im if im and im.name != "broken.jpg" else None
                                            for im in expected_images])
    stored = np.concatenate([np.load(f) for f in sorted((tmp_path / "index" / "encode")
                                                        .glob("shard-*.npy"))])
    assert np.abs(stored.astype(np.float32) - expected.numpy()).max() < 2e-3
    hits = index.search(expected[:3], k=1)
    assert [h[0].doc_id for h in hits] == ["P0", "P1", "P2"]


def test_rebuilding_into_an_existing_index_needs_overwrite(tmp_path, tiny):
    kb, _ = make_kb(tmp_path, n=8)
    build_index(kb, tiny, tmp_path / "ix", method="exact", workers=0)
    assert not (tmp_path / "ix" / "encode").exists()  # shards removed after indexing
    with pytest.raises(FileExistsError, match="--overwrite"):
        build_index(kb, tiny, tmp_path / "ix", method="exact", workers=0)
    report = build_index(kb, tiny, tmp_path / "ix", method="plaid", workers=0, overwrite=True,
                         num_centroids=16)
    assert report.method == "plaid" and MultiVectorIndex.load(tmp_path / "ix").method == "plaid"


def test_unfinished_build_with_other_inputs_is_refused(tmp_path, tiny):
    kb, _ = make_kb(tmp_path, n=8)
    out = tmp_path / "ix"
    (out / "encode").mkdir(parents=True)
    (out / "encode" / "plan.json").write_text(json.dumps({"kb": "another"}))
    with pytest.raises(PlanMismatch, match="other inputs"):
        build_index(kb, tiny, out, workers=0)


def test_dataloader_workers_give_the_same_features(tmp_path, tiny):
    kb, _ = make_kb(tmp_path, n=24)
    build_index(kb, tiny, tmp_path / "a", method="exact", workers=0, shard_size=10,
                keep_shards=True)
    build_index(kb, tiny, tmp_path / "b", method="exact", workers=2, shard_size=10,
                keep_shards=True)
    for name in ("shard-00000.npy", "shard-00001.npy", "shard-00002.npy"):
        a = np.load(tmp_path / "a" / "encode" / name)
        b = np.load(tmp_path / "b" / "encode" / name)
        assert np.array_equal(a, b)


def run_cli(*args, **kwargs):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "rag_vqa", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_build_killed_with_sigkill_resumes_to_the_same_index(tmp_path):
    kb, _ = make_kb(tmp_path, n=400)
    common = ["--retriever", "tiny", "--shard-size", "10", "--workers", "0", "--batch-size", "5"]
    done = run_cli("index", "build", str(kb), "--out", str(tmp_path / "straight"), *common)
    assert done.wait(timeout=300) == 0, done.stderr.read()

    victim = run_cli("index", "build", str(kb), "--out", str(tmp_path / "killed"), *common)
    marker = tmp_path / "killed" / "encode" / "shard-00003.json"
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline and victim.poll() is None:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    finished = list((tmp_path / "killed" / "encode").glob("shard-*.json"))
    assert 4 <= len(finished) < 41, "the build was not interrupted mid-way"
    assert not (tmp_path / "killed" / "manifest.json").exists()

    resumed = run_cli("index", "build", str(kb), "--out", str(tmp_path / "killed"), *common,
                      "--json")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert json.loads(out)["shards_resumed"] >= 4
    a = json.loads((tmp_path / "straight" / "manifest.json").read_text())["files"]
    b = json.loads((tmp_path / "killed" / "manifest.json").read_text())["files"]
    assert a == b  # every file of the index is byte-identical


def test_overwrite_killed_with_sigkill_leaves_the_old_index_usable(tmp_path):
    """--overwrite builds beside the working index: killed at any moment, the old index still
    loads (every digest checked) and answers as before; run again, the new one replaces it."""
    kb, _ = make_kb(tmp_path, n=300)
    common = ["--retriever", "tiny", "--shard-size", "10", "--workers", "0", "--batch-size", "5"]
    out = tmp_path / "ix"
    first = run_cli("index", "build", str(kb), "--out", str(out), "--method", "exact", *common)
    assert first.wait(timeout=300) == 0, first.stderr.read()
    old = MultiVectorIndex.load(out)
    queries = np.random.default_rng(0).standard_normal((3, 32, 128)).astype(np.float32)
    before = old.search(queries, k=5)

    victim = run_cli("index", "build", str(kb), "--out", str(out), "--method", "plaid",
                     "--overwrite", *common)
    marker = out / "encode" / "shard-00004.json"
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline and victim.poll() is None:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    survivor = MultiVectorIndex.load(out)
    assert survivor.digest == old.digest and survivor.search(queries, k=5) == before

    again = run_cli("index", "build", str(kb), "--out", str(out), "--method", "plaid",
                    "--overwrite", *common, "--json")
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    assert json.loads(stdout)["shards_resumed"] >= 4
    new = MultiVectorIndex.load(out)
    assert new.method == "plaid" and len(new) == len(old)
    assert [p.name for p in out.glob("data-*")] == [new.manifest["data"]]


def test_index_info_cli(tmp_path, tiny):
    kb, _ = make_kb(tmp_path, n=8)
    build_index(kb, tiny, tmp_path / "ix", method="exact", workers=0)
    proc = run_cli("index", "info", str(tmp_path / "ix"), "--json")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    info = json.loads(out)
    assert info["documents"] == 9 and info["method"] == "exact"
    assert info["retriever"]["is_tiny"] and info["kb"]["status"] == "ok"
    # a passage rewritten in place (same size): only the full check sees it, and reports the KB
    sqlite = kb / "passages.sqlite"
    data = sqlite.read_bytes()
    text = b"a passage with a broken image"
    sqlite.write_bytes(data.replace(text, text.upper()))
    assert sqlite.read_bytes() != data
    proc = run_cli("index", "info", str(tmp_path / "ix"), "--json")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    proc = run_cli("index", "info", str(tmp_path / "ix"), "--verify", "--json")
    out, err = proc.communicate(timeout=120)
    info = json.loads(out)
    assert proc.returncode == 2 and info["kb"]["status"] == "damaged"
    assert "differs from the recorded digest" in info["kb"]["detail"]
    sqlite.write_bytes(data)
    index = MultiVectorIndex.load(tmp_path / "ix")
    (index.data_path / "ids_utf8-00000.npy").write_bytes(b"garbage")
    proc = run_cli("index", "info", str(tmp_path / "ix"))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "ids_utf8-00000.npy" in err and "Traceback" not in err


def test_stored_features_are_float16_of_the_encoder_output(tmp_path, tiny):
    kb, _ = make_kb(tmp_path, n=6)
    build_index(kb, tiny, tmp_path / "ix", method="exact", workers=0, keep_shards=True)
    stored = np.load(tmp_path / "ix" / "encode" / "shard-00000.npy")
    assert stored.dtype == np.float16 and stored.shape == (7, 32, 128)
    assert torch.allclose(torch.from_numpy(stored.astype(np.float32)).norm(dim=-1),
                          torch.ones(7, 32), atol=2e-3)
