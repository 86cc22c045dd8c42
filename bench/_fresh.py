"""Run one benchmark case in a fresh (spawned) process, so its peak RSS is its own.

``target(*args, queue)`` must put one result dict on ``queue``."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from typing import Any


def run_fresh(target: Callable[..., None], *args: Any) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if proc.exitcode:
        raise RuntimeError(f"benchmark process exited with {proc.exitcode}")
    return result
