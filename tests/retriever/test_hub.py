"""Without a network, loading a hub model fails in seconds with what to do (it used to retry for
minutes), and a model already in the cache still loads. The hub is a local socket that accepts
connections and never answers (the worst case: no refusal, no reply) or a closed port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retriever.hub import looks_like_hub_id

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def silent_hub():
    """An endpoint that completes TCP handshakes and then says nothing."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


@pytest.fixture
def closed_hub():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}"


def run_offline_world(endpoint: str, cache: Path, code: str) -> tuple[subprocess.CompletedProcess,
                                                                      float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(cache), HF_HUB_CACHE=str(cache / "hub"),
               PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    return done, time.perf_counter() - start


LOADERS = {
    "generator": "from generator import build_generator\n"
                 "build_generator({'model': 'nobody/uncached-llava'})",
    "retriever": "from retriever import ReTRetriever\n"
                 "ReTRetriever.from_pretrained('nobody/uncached-ret')",
    "bem": "from eval.metrics.bem import BEMScorer\n"
           "BEMScorer('nobody/uncached-bem')._load()",
}


@pytest.mark.parametrize("which", sorted(LOADERS))
def test_an_unreachable_hub_fails_within_seconds(tmp_path, silent_hub, which):
    done, seconds = run_offline_world(silent_hub, tmp_path, LOADERS[which])
    assert done.returncode != 0
    assert "cannot be reached" in done.stderr and "hf download nobody/uncached" in done.stderr
    assert "HF_HUB_OFFLINE" in done.stderr
    assert seconds < 30, f"took {seconds:.0f} s"


def test_a_refused_connection_fails_at_once_through_the_cli(tmp_path, closed_hub):
    code = ("import sys; from rag_vqa.cli import main\n"
            "sys.exit(main(['retriever', 'info', 'nobody/uncached-ret', '--json']))")
    done, seconds = run_offline_world(closed_hub, tmp_path, code)
    assert done.returncode == 2, done.stderr
    error = json.loads(done.stdout)
    assert "cannot be reached" in error["error"] and error["kind"] == "input"
    assert seconds < 30


def test_a_cached_model_loads_when_the_hub_is_unreachable(tmp_path, silent_hub):
    """The hub cache layout (refs/main -> snapshots/<commit>/...) filled with a saved retriever."""
    from retriever.tiny import build_tiny_retriever

    repo = tmp_path / "hub" / "models--nobody--cached-ret"
    commit = "0123456789abcdef0123456789abcdef01234567"
    build_tiny_retriever(seed=3).save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    code = ("from retriever import ReTRetriever\n"
            "m = ReTRetriever.from_pretrained('nobody/cached-ret')\n"
            "print(m.encode_documents(['a flag'], [None]).shape)")
    done, seconds = run_offline_world(silent_hub, tmp_path, code)
    assert done.returncode == 0, done.stderr
    assert "torch.Size([1, 32, 128])" in done.stdout and "from the local cache" in done.stderr
    assert seconds < 60


@pytest.mark.parametrize("name,hub", [("aimagelab/ReT-CLIP-ViT-L-14", True), ("gpt2", True),
                                      ("./model", False), ("/abs/path", False), ("a/b/c", False),
                                      ("", False), ("org/..", False)])
def test_hub_ids_are_told_from_paths(name, hub):
    assert looks_like_hub_id(name) is hub
