"""Running a job's work on a pool of Ray workers, one way for every scale-out path (``eval run
--ray``, ``index build --ray``): the session with the workers planned and every node checked
before any work is sent, the actor pool, the results streamed back with our own worker errors in
one line (not Ray's traceback), and the actor set-up that reports a failed model load the same
way. Connecting, sizing and the storage checks themselves are ``ray_runtime``'s.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .ray_runtime import (
    RayOptions,
    SharedPath,
    WorkerPlan,
    WorkerSetupError,
    check_shared_paths,
    node_name,
    plan_workers,
    quiet_dataset,
    ray_session,
    worker_error,
)

__all__ = ["SAMPLE_IMAGES", "iter_results", "map_on_workers", "ray_job", "worker_setup"]

SAMPLE_IMAGES = 3          # image files each node must see as the driver does


@contextmanager
def ray_job(options: RayOptions, paths: Sequence[SharedPath], decode_per_worker: int = 0
            ) -> Iterator[tuple[Any, WorkerPlan]]:
    """Ray connected (the ``ray`` module) and the workers planned, once every node of the
    cluster sees ``paths`` as the driver does (else SharedStorageError naming node and path)."""
    with ray_session(options) as ray:
        plan = plan_workers(options, decode_per_worker=decode_per_worker)
        check_shared_paths(paths)
        yield ray, plan


def map_on_workers(dataset: Any, actor: type, plan: WorkerPlan, **constructor: Any) -> Any:
    """``dataset`` through a pool of ``actor`` (one per planned worker, each with the plan's CPUs
    and GPUs, built with ``constructor``), one row in and one row out."""
    from ray.data import ActorPoolStrategy

    return dataset.map_batches(
        actor, batch_size=1, compute=ActorPoolStrategy(size=plan.workers),
        num_cpus=plan.cpus_per_worker, num_gpus=plan.gpus_per_worker or None,
        udf_modifying_row_count=False, fn_constructor_kwargs=constructor)


def iter_results(dataset: Any, preserve_order: bool = False) -> Iterator[dict[str, Any]]:
    """The dataset's blocks as numpy columns, Ray Data's own progress bars off; an error of
    ours raised in a worker (storage it cannot see, a failed set-up) comes out as
    WorkerSetupError with its own one-line message."""
    quiet_dataset(dataset, preserve_order=preserve_order)
    try:
        yield from dataset.iter_batches(batch_size=None, batch_format="numpy")
    except Exception as exc:
        message = worker_error(exc)
        if message:
            raise WorkerSetupError(message) from None
        raise


@contextmanager
def worker_setup(what: str, threads: int) -> Iterator[str]:
    """In an actor's constructor: torch on ``threads`` threads, and a failure inside as one line,
    "a Ray worker on HOST could not load WHAT: ...". Yields "a Ray worker on HOST" for the
    caller's own checks (a WorkerSetupError raised inside passes as it is)."""
    import torch

    torch.set_num_threads(threads)
    where = f"a Ray worker on {node_name()}"
    try:
        yield where
    except WorkerSetupError:
        raise
    except Exception as exc:
        raise WorkerSetupError(f"{where} could not load {what}: "
                               f"{' '.join(str(exc).split())}") from exc
