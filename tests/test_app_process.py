"""The demo as a process: started the way users start it, on a free loopback port, and stopped
by SIGTERM or SIGINT. Also the launcher the other demo tests share (``demo_process``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
RAG_VQA = Path(sys.executable).with_name("rag-vqa")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(port: int) -> bool:
    """Whether something accepts connections on the loopback port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class DemoRun:
    proc: subprocess.Popen
    port: int
    tmp: Path       # the process's TMPDIR: its launch folder is made in there
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def launch_folders(self) -> list[Path]:
        return sorted(self.tmp.glob("rag-vqa-demo-*"))


@contextmanager
def demo_process(workdir: Path, *options: str, command: list[str] | None = None,
                 timeout: float = 180, profile: str = "tiny") -> Iterator[DemoRun]:
    """The demo over the sample with ``profile``'s models (indexed into ``workdir``), until the
    block ends."""
    port = free_port()
    tmp, log = workdir / "tmp", workdir / "demo.log"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "XDG_CACHE_HOME": str(workdir / "cache"),
           "TMPDIR": str(tmp), "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    command = command or [sys.executable, "app.py"]
    with open(log, "wb") as out:
        proc = subprocess.Popen([*command, "--sample", "--profile", profile, "--port", str(port),
                                 *options], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    run = DemoRun(proc, port, tmp, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the demo exited early:\n{run.output()}")
            try:
                if httpx.get(f"{run.url}/config", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the demo did not answer on port {port}:\n{run.output()}")
            time.sleep(0.3)
        yield run
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _hold_a_connection(url: str, stop: threading.Event) -> None:
    """What an open browser tab does: keep a streaming request open."""
    try:
        with httpx.stream("GET", f"{url}/gradio_api/heartbeat/held-open", timeout=30) as resp:
            for _ in resp.iter_bytes():
                if stop.is_set():
                    return
    except httpx.HTTPError:
        pass


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 128 + signal.SIGTERM),
                                          (signal.SIGINT, 130)])
def test_stopping_rag_vqa_demo_stops_the_server(tmp_path, signum, code):
    stop = threading.Event()
    with demo_process(tmp_path, command=[str(RAG_VQA), "demo"]) as run:
        holder = threading.Thread(target=_hold_a_connection, args=(run.url, stop), daemon=True)
        holder.start()
        assert len(run.launch_folders()) == 1
        time.sleep(0.5)
        started = time.monotonic()
        run.proc.send_signal(signum)
        try:
            assert run.proc.wait(timeout=15) == code, run.output()
        finally:
            stop.set()
        assert time.monotonic() - started < 10
        assert "Traceback" not in run.output()  # the open stream was ended, not cut off
        assert not answers(run.port), "something still serves the demo's port"
        assert run.launch_folders() == []  # uploads and thumbnails are gone with it


def test_a_demo_that_cannot_start_says_why_without_a_traceback(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "app.py", "--index", str(tmp_path / "missing")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "missing" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not list(tmp_path.glob("rag-vqa-demo-*"))


def test_rag_vqa_demo_becomes_the_app_with_every_option(monkeypatch):
    from rag_vqa import cli

    calls = []
    monkeypatch.setattr(os, "execv", lambda path, argv: calls.append((path, argv)))
    cli.main(["demo", "--sample", "--profile", "tiny", "--port", "8123", "--host", "0.0.0.0",
              "--concurrency", "2", "--max-queue", "5", "--max-new-tokens", "9"])
    (path, argv), = calls
    assert path == sys.executable and argv[:3] == [sys.executable, "-m", "app"]
    forwarded = " ".join(argv[3:])
    for option in ("--sample", "--profile tiny", "--port 8123", "--host 0.0.0.0",
                   "--concurrency 2", "--max-queue 5", "--max-new-tokens 9"):
        assert option in forwarded


@pytest.mark.parametrize("option", ["--concurrency 0", "--max-queue -1", "--port 70000"])
def test_bad_demo_options_stop_at_parse_time(option, capsys):
    from rag_vqa import cli

    try:
        code = cli.main(["demo", "--sample", *option.split()])
    except SystemExit as stop:  # argparse's own way out
        code = stop.code
    assert code == 2 and option.split()[0] in capsys.readouterr().err
