"""Reaching Ray and checking the workers: addresses, fail-fast on a closed port, sizing, shared
storage seen by every node, a worker whose model differs from the driver's."""

import argparse
import os
import re
import socket
import subprocess
import sys
import time

import pytest
import torch

from rag_vqa.indexing import build_index
from rag_vqa.loading import load_retriever
from rag_vqa.ray_runtime import (
    RayOptions,
    RayUnavailableError,
    SharedPath,
    SharedStorageError,
    WorkerSetupError,
    add_ray_arguments,
    check_reachable,
    check_shared_paths,
    options_from_args,
    parse_address,
    plan_workers,
    shared_path,
)
from tests.scale_out.scale_helpers import generated_kb

pytestmark = pytest.mark.slow


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_addresses_and_options():
    for good in ("local", "auto", "ray://127.0.0.1:10001", "127.0.0.1:6379", "[::1]:6379"):
        assert parse_address(good) == good
    for bad in ("", "localhost", "ray://host", "host:0", "host:99999", "http://x"):
        with pytest.raises(ValueError, match="--ray"):
            parse_address(bad)
    assert RayOptions.of(None) is None and RayOptions.of("auto").address == "auto"
    with pytest.raises(ValueError, match="workers"):
        RayOptions("local", workers=0)
    parser = argparse.ArgumentParser()
    add_ray_arguments(parser)
    args = parser.parse_args(["--ray", "local", "--ray-workers", "3", "--gpus-per-worker", "0.5"])
    assert options_from_args(args) == RayOptions("local", 3, 0.5, None, quiet=True)
    with pytest.raises(ValueError, match="only apply with --ray"):
        options_from_args(parser.parse_args(["--ray-workers", "2"]))
    assert options_from_args(parser.parse_args([])) is None


def test_an_unreachable_address_fails_within_seconds(ray_runtime):
    """Even from a process already connected to a runtime (the probe never trusts it)."""
    port = closed_port()
    for address, what in ((f"ray://127.0.0.1:{port}", "Ray Client server"),
                          (f"127.0.0.1:{port}", "Ray head (GCS)")):
        start = time.perf_counter()
        with pytest.raises(RayUnavailableError, match=rf"cannot reach the {re.escape(what)} "
                                                      rf"at {re.escape(address)}"):
            check_reachable(RayOptions(address))
        assert time.perf_counter() - start < 6


COMMANDS = {  # each refused before it reads its (here missing) inputs or loads a model
    "index build": lambda d: ["index", "build", str(d), "--retriever", "tiny", "--out",
                              str(d / "ix")],
    "eval run": lambda d: ["eval", "run", "--dataset", "infoseek", "--questions",
                           str(d / "q.jsonl"), "--images", str(d), "--out", str(d / "run")],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_cli_refuses_an_unreachable_address_with_exit_2(tmp_path, command):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    address = f"ray://127.0.0.1:{closed_port()}"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "rag_vqa", *COMMANDS[command](tmp_path),
                           "--ray", address], env=env, capture_output=True, text=True,
                          check=False, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"cannot reach the Ray Client server at {address}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.perf_counter() - start < 60   # the CLI's own start-up (imports) included


def test_workers_are_sized_to_the_runtime(ray_runtime):
    plan = plan_workers(RayOptions("local"), decode_per_worker=1)
    assert (plan.workers, plan.cpus_per_worker, plan.gpus_per_worker) == (1, 2, 0)
    plan = plan_workers(RayOptions("local", workers=2), decode_per_worker=2)
    assert (plan.workers, plan.cpus_per_worker, plan.decode_tasks, plan.decode_cpus) == \
        (2, 1, 4, 0)
    with pytest.raises(ValueError, match="do not fit"):
        plan_workers(RayOptions("local", workers=3, cpus_per_worker=1))
    with pytest.raises(ValueError, match="do not fit"):
        plan_workers(RayOptions("local", gpus_per_worker=1))


def test_a_node_that_cannot_see_the_files_is_named_up_front(ray_runtime, tmp_path):
    present = tmp_path / "passages.sqlite"
    present.write_bytes(b"x" * 100)
    recorded = shared_path("knowledge base", present, digest=True)
    check_shared_paths([recorded, shared_path("image root", tmp_path)])  # all visible: fine
    present.write_bytes(b"y" * 100)    # same size, other content: another copy
    missing = SharedPath("image root", str(tmp_path / "nowhere"), "a folder")
    with pytest.raises(SharedStorageError) as caught:
        check_shared_paths([recorded, missing])
    message = str(caught.value)
    assert f"node {socket.gethostname()}" in message and str(tmp_path / "nowhere") in message
    assert "does not exist" in message and "differs from the driver's copy" in message
    assert "every node mounts at the same path" in message


def test_a_worker_whose_retriever_differs_from_the_drivers_is_refused(ray_runtime, tmp_path):
    """The workers load the retriever by name; weights changed in the driver (fine-tuned in
    memory) cannot be reproduced there, and the build stops with a clear error."""
    kb = generated_kb(tmp_path, 20)
    changed = load_retriever("tiny")
    with torch.no_grad():
        next(changed.model.document_encoder.parameters()).add_(0.5)
    with pytest.raises(WorkerSetupError, match="other config or weights"):
        build_index(kb, changed, tmp_path / "ix", method="exact", shard_size=8, workers=1,
                    show_progress=False, ray=RayOptions("local", workers=1))
    assert not (tmp_path / "ix" / "manifest.json").exists()
