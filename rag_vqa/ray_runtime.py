"""Ray for the scale-out paths (``--ray ADDRESS``): reaching the cluster, sizing the workers and
checking that every node sees the files a job reads.

Ray is optional (``pip install 'rag-vqa[ray]'``); nothing here imports it before a Ray run
starts. Unreachable addresses fail within seconds (a TCP probe before ``ray.init``), and a node
that cannot see the knowledge base, the images or the index is named before any work starts.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import re
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from retriever.errors import UserError, UserInputError
from retriever.fileio import file_digest, path_kind

from .cli_args import non_negative_float, positive_int

__all__ = [
    "ADDRESS_HELP",
    "RayOptions",
    "RayUnavailableError",
    "SharedPath",
    "SharedStorageError",
    "WorkerPlan",
    "WorkerSetupError",
    "add_ray_arguments",
    "check_reachable",
    "check_shared_paths",
    "check_visible",
    "node_name",
    "options_from_args",
    "parse_address",
    "plan_workers",
    "quiet_dataset",
    "ray_session",
    "shared_path",
    "versions",
    "worker_error",
]

logger = logging.getLogger(__name__)

ADDRESS_HELP = ("local (start a Ray runtime on this machine), auto (the cluster this machine "
                "belongs to, as `ray.init('auto')`), ray://HOST:PORT (Ray Client) or HOST:PORT "
                "(the head's GCS address)")
PROBE_SECONDS = 5.0
CHECK_SECONDS = 600.0      # the up-front check hashes the KB once per node


class RayUnavailableError(UserError, ValueError):
    """Ray is not installed, or the cluster at the address cannot be reached."""


class SharedStorageError(UserError, ValueError):
    """A node cannot see a file the job reads, or sees another copy of it."""


class WorkerSetupError(UserError, ValueError):
    """A Ray worker could not set itself up (load its models, match the driver's)."""


@dataclass
class RayOptions:
    """Where and how wide to run. ``None``: chosen from the cluster (one worker per GPU; without
    GPUs, one CPU worker per four cores, each with an equal share of them)."""

    address: str = "local"
    workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: int | None = None
    quiet: bool = False             # Ray's console logging down to errors (CLI runs)

    def __post_init__(self) -> None:
        self.address = parse_address(self.address)
        for name in ("workers", "cpus_per_worker"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) != value
                                      or value < 1):
                raise UserInputError(f"{name} must be a whole number >= 1, got {value!r}")
        if self.gpus_per_worker is not None and not self.gpus_per_worker >= 0:
            raise UserInputError(f"gpus_per_worker must be >= 0, got {self.gpus_per_worker!r}")

    @classmethod
    def of(cls, value: RayOptions | str | None) -> RayOptions | None:
        """``ray=`` as the Python API takes it: options, an address, or None (no Ray)."""
        if value is None or isinstance(value, RayOptions):
            return value
        return cls(address=value)


@dataclass
class WorkerPlan:
    """What each Ray worker asks for, and how many there are."""

    workers: int
    gpus_per_worker: float
    cpus_per_worker: int      # also the torch threads of a CPU worker
    decode_tasks: int         # concurrent image-decoding tasks (index builds)
    # CPUs each decoding task reserves: 1 where the workers leave enough, else a share of what
    # they leave; 0 when they take every core (decoding then shares them, as the local build's
    # DataLoader processes share the model's cores)
    decode_cpus: float
    nodes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- addresses and the command line --------------------------------------------------------------

def _host_port(address: str) -> tuple[str, int] | None:
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


def parse_address(text: str) -> str:
    """``text`` if it is a Ray address this project accepts, else ValueError saying which are."""
    value = str(text).strip()
    if value in ("local", "auto") or _host_port(value) is not None:
        return value
    raise UserInputError(f"--ray: expected {ADDRESS_HELP}; got {text!r}")


def _ray_address(text: str) -> str:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--ray: ")) from None


def add_ray_arguments(parser: argparse.ArgumentParser, decoding: bool = False) -> None:
    """--ray, --ray-workers, --gpus-per-worker, --cpus-per-worker."""
    group = parser.add_argument_group("scale out on Ray (pip install 'rag-vqa[ray]')")
    group.add_argument("--ray", metavar="ADDRESS", type=_ray_address, default=None,
                       help=f"run on Ray: {ADDRESS_HELP}")
    group.add_argument("--ray-workers", type=positive_int, default=None, metavar="N",
                       help="Ray workers, each with its own copy of the models (default: one per "
                            "GPU of the cluster; without GPUs one per four CPUs)")
    group.add_argument("--gpus-per-worker", type=non_negative_float, default=None, metavar="G",
                       help="GPUs each worker asks for (default: 1 when the cluster has GPUs, "
                            "else 0; 0.5 puts two workers on a GPU)")
    group.add_argument("--cpus-per-worker", type=positive_int, default=None, metavar="C",
                       help="CPUs each worker asks for (default: 1 with GPUs, else an equal "
                            "share of the cluster's)"
                            + ("; image decoding runs in --workers CPU tasks per worker"
                               if decoding else ""))


def options_from_args(args: argparse.Namespace) -> RayOptions | None:
    """The Ray options of a parsed command line; None without --ray."""
    extra = [flag for flag, value in (("--ray-workers", args.ray_workers),
                                      ("--gpus-per-worker", args.gpus_per_worker),
                                      ("--cpus-per-worker", args.cpus_per_worker))
             if value is not None]
    if args.ray is None:
        if extra:
            raise UserInputError(f"{', '.join(extra)} only apply with --ray ADDRESS")
        return None
    return RayOptions(args.ray, args.ray_workers, args.gpus_per_worker, args.cpus_per_worker,
                      quiet=getattr(args, "verbose", 0) == 0)


# -- the session -----------------------------------------------------------------------------------

def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(f"--ray needs Ray, which is not installed here ({exc}): "
                                  "pip install 'rag-vqa[ray]'") from None
    return ray


def check_reachable(options: RayOptions) -> None:
    """Fail within seconds, before any model loads, when Ray is missing or the address is
    closed (``ray.init`` would otherwise retry for a long time)."""
    _import_ray()
    found = _host_port(options.address)
    if found is None:  # "local" starts a runtime; "auto" is checked by ray.init itself
        return
    try:
        socket.create_connection(found, timeout=PROBE_SECONDS).close()
    except OSError as exc:
        client = options.address.startswith("ray://")
        what, port = ("Ray Client server", 10001) if client else ("Ray head (GCS)", 6379)
        raise RayUnavailableError(
            f"cannot reach the {what} at {options.address}: {exc.strerror or exc}. Start the "
            f"cluster there (`ray start --head`; it listens on port {port}), check the "
            "address, or use --ray local") from None


@contextmanager
def ray_session(options: RayOptions) -> Iterator[Any]:
    """Ray connected for the duration (the ``ray`` module); shut down again only if this call
    started it (a runtime the caller already has, as in tests, is reused and left running)."""
    ray = _import_ray()
    if ray.is_initialized():
        logger.info("using the Ray runtime this process is already connected to")
        _quiet(options)
        yield ray
        return
    check_reachable(options)
    kwargs: dict[str, Any] = {"include_dashboard": False} if options.address == "local" else {}
    if options.quiet:
        kwargs["logging_level"] = logging.ERROR
    try:
        ray.init(address=options.address, **kwargs)
    except ConnectionError as exc:
        where = "running on this machine (--ray auto joins one started with `ray start " \
            "--head`; --ray local starts one)" if options.address == "auto" else \
            f"at {options.address}"
        raise RayUnavailableError(f"no Ray cluster {where}: {exc}") from None
    try:
        _quiet(options)
        yield ray
    finally:
        ray.shutdown()


def _quiet(options: RayOptions) -> None:
    """Ray Data's console logging down to errors (its full log stays in the session folder)."""
    if not options.quiet:
        return
    import ray.data  # noqa: F401  (configures the "ray.data" logger)

    for handler in logging.getLogger("ray.data").handlers:
        if handler.name == "console":
            handler.setLevel(logging.ERROR)


def quiet_dataset(dataset: Any, preserve_order: bool = False) -> Any:
    """Ray Data's own progress bars off (the driver shows one bar of its own)."""
    context = dataset.context
    context.enable_progress_bars = False
    context.enable_operator_progress_bars = False
    context.execution_options.preserve_order = preserve_order
    return dataset


def plan_workers(options: RayOptions, decode_per_worker: int = 0) -> WorkerPlan:
    """Workers sized to the connected cluster; refuses a local runtime they cannot fit."""
    import ray

    resources = ray.cluster_resources()
    total_cpus, total_gpus = int(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    gpus = options.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if total_gpus >= 1 else 0.0
    if gpus > 0:
        workers = options.workers or max(1, int(total_gpus // gpus))
        cpus = options.cpus_per_worker or 1
    else:
        workers = options.workers or max(1, total_cpus // 4)
        cpus = options.cpus_per_worker or max(1, total_cpus // workers)
    decode_tasks = workers * max(1, decode_per_worker)
    spare = total_cpus - workers * cpus   # decoding gets what the workers leave, up to 1 each
    decode_cpus = min(1.0, int(100 * spare / decode_tasks) / 100) if spare > 0 else 0.0
    plan = WorkerPlan(workers, gpus, cpus, decode_tasks, decode_cpus, nodes)
    short = []
    if workers * gpus > total_gpus:
        short.append(f"{workers} x {gpus:g} GPUs, the cluster has {total_gpus:g}")
    if workers * cpus > total_cpus:
        short.append(f"{workers} x {cpus} CPUs, the cluster has {total_cpus}")
    if short:
        message = (f"the Ray workers do not fit ({'; '.join(short)}): pass fewer --ray-workers "
                   "or smaller --gpus-per-worker / --cpus-per-worker")
        if options.address == "local":
            raise UserInputError(message)
        logger.warning("%s (waiting for an autoscaler to add nodes)", message)
    return plan


def versions(with_ray: bool = False) -> dict[str, str]:
    """Versions that a build or run records (and that every node must share)."""
    import torch

    from . import __version__

    out = {"rag_vqa": __version__, "torch": torch.__version__,
           "python": platform.python_version()}
    if with_ray:
        import ray

        out["ray"] = ray.__version__
    return out


def node_name() -> str:
    """How messages name the node a worker runs on: its host name, as a cluster's admin knows
    it (Ray's own node address can be an internal one)."""
    return socket.gethostname()


# -- shared storage ----------------------------------------------------------------------------

@dataclass(frozen=True)
class SharedPath:
    """A file or folder every node must see as the driver does."""

    what: str
    path: str
    kind: str = "file"             # "file" or "a folder" (as path_kind says)
    size: int | None = None
    digest: str | None = None      # xxh3 of the file, checked once per node up front


def shared_path(what: str, path: str | os.PathLike, digest: bool = False) -> SharedPath:
    """``path`` as the driver sees it (absolute, with its size and optionally its digest)."""
    resolved = Path(path).resolve()
    kind = path_kind(resolved)
    if kind not in ("file", "a folder"):
        raise FileNotFoundError(f"{what} {resolved} is {kind}")
    if kind == "a folder":
        return SharedPath(what, str(resolved), kind)
    return SharedPath(what, str(resolved), kind, resolved.stat().st_size,
                      file_digest(resolved) if digest else None)


def _problems(paths: Sequence[SharedPath], digests: bool, driver_versions: dict[str, str] | None
              ) -> list[str]:
    out = []
    for item in paths:
        kind = path_kind(item.path)
        if kind != item.kind:
            out.append(f"{item.what} {item.path} is {kind}" if kind != "missing"
                       else f"{item.what} {item.path} does not exist")
        elif item.size is not None and os.stat(item.path).st_size != item.size:
            out.append(f"{item.what} {item.path} has {os.stat(item.path).st_size} bytes, the "
                       f"driver's has {item.size} (another copy)")
        elif digests and item.digest and file_digest(item.path) != item.digest:
            out.append(f"{item.what} {item.path} differs from the driver's copy (digest)")
    if driver_versions:
        mine = versions()
        for name in ("rag_vqa", "torch"):
            if mine.get(name) != driver_versions.get(name):
                out.append(f"{name} {mine.get(name)} is installed, the driver has "
                           f"{driver_versions.get(name)}")
    return out


def check_visible(paths: Sequence[SharedPath]) -> None:
    """In a worker: SharedStorageError (one line) unless it sees every path like the driver."""
    problems = _problems(paths, digests=False, driver_versions=None)
    if problems:
        raise SharedStorageError(f"node {node_name()}: {'; '.join(problems)}; such files must be "
                                 "on storage every node mounts at the same path")


def _node_problems(paths: Sequence[SharedPath], driver_versions: dict[str, str]
                   ) -> tuple[str, list[str]]:
    return node_name(), _problems(paths, digests=True, driver_versions=driver_versions)


def check_shared_paths(paths: Sequence[SharedPath]) -> None:
    """Up front, on every node of the cluster: each path seen as the driver sees it (sizes,
    digests where recorded) and the same rag-vqa and torch; one error naming node and path."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(num_cpus=0, max_retries=0)(_node_problems)
    driver = versions()
    pending = [remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        node["NodeID"], soft=False)).remote(list(paths), driver)
        for node in ray.nodes() if node.get("Alive")]
    problems = [f"node {name}: {problem}"
                for name, found in ray.get(pending, timeout=CHECK_SECONDS) for problem in found]
    if problems:
        raise SharedStorageError("not every node of the Ray cluster sees the job's files as the "
                                 "driver does:\n  " + "\n  ".join(problems) + "\nPut them on "
                                 "storage that every node mounts at the same path (NFS, a "
                                 "parallel file system) and install the same rag-vqa everywhere")


_OUR_ERRORS = re.compile(r"(?:SharedStorageError|WorkerSetupError): (.+)")


def worker_error(exc: BaseException) -> str | None:
    """Our own error raised inside a Ray worker, out of the traceback text Ray wraps it in."""
    found = _OUR_ERRORS.findall(str(exc))
    return found[-1].strip() if found else None
