"""The cluster runtime: which Ray to use, whether a request fits its nodes, and where a run's artifacts live.

- ``init_ray(address)``: no address starts densepipe's own local Ray (``address="local"``: never a cluster that
  something else started on this machine); ``"auto"`` joins the cluster running here; ``"host:port"`` a cluster
  whose node this driver runs on; ``"ray://host:10001"`` goes through Ray Client (``ray[client]``). On a cluster,
  densepipe's own packages travel in the ``runtime_env`` (``py_modules``), so nodes need only the dependencies.
- ``check_fits(per_worker, workers, what, option)``: a request that no node can meet is refused at once with the
  numbers (Ray would wait for it forever).
- ``Storage``: the root of a run's shared artifacts, a local folder (one machine, or NFS) or any pyarrow filesystem
  URI (``s3://bucket/prefix``, ``gs://…``; an S3-compatible server with ``?endpoint_override=host:port&scheme=http``).
  Workers get URIs and fetch what they read into a node-local cache; no worker opens a path of the driver's.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from retriever.types import ConfigError, DensepipeError

log = logging.getLogger("densepipe.runtime")


class ClusterError(DensepipeError):
    """The cluster cannot run what was asked (a request no node fits, a stage that stopped making progress)."""


@dataclass(frozen=True)
class RayEnv:
    """Where and how every Ray stage of a run places its workers: one value for the whole run, handed to each
    stage (``--ray-address``, ``--storage``, ``--cpus-per-worker``; ``[run]`` in a config)."""

    address: str | None = None  # None: a private local Ray; "auto", host:port or ray://host:10001
    storage: str | None = None  # the workers' storage root (folder or URI); None: this machine's disk
    cpus_per_worker: float | None = None  # None: 1 on a cluster, the machine's CPUs / workers on the local Ray
    gpus_per_worker: float | None = None  # None: 1 when the cluster has GPUs
    stall_timeout: float = 600.0  # seconds without progress before a stage fails (encode)

    def __post_init__(self) -> None:
        if self.stall_timeout <= 0:
            raise ConfigError(f"stall_timeout must be > 0 seconds, got {self.stall_timeout}.")

    def start(self) -> None:
        init_ray(self.address)

    def request(self, workers: int, gpus: bool = True) -> dict[str, float]:
        """What one of ``workers`` workers asks for (``gpus=False``: CPU-only work such as mining)."""
        return worker_request(self.cpus_per_worker, self.gpus_per_worker if gpus else 0.0, workers)


def _packages() -> list:
    import indexes
    import pipelines
    import retriever

    return [retriever, indexes, pipelines]


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start (or connect to) Ray once per process; no dashboard, Ray's own progress bars off."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=True,
                  ignore_reinit_error=True)
    runtime_env: dict = {"worker_process_setup_hook": "pipelines.runtime.quiet_worker"}
    global _PRIVATE
    if not address:
        ray.init(address="local", num_cpus=num_cpus, runtime_env=runtime_env, **kwargs)
        _PRIVATE = True
    else:
        if address.startswith("ray://"):
            import importlib.util

            if importlib.util.find_spec("grpc") is None:  # Ray Client's transport
                raise ConfigError(f"--ray-address {address}: Ray Client needs `pip install 'ray[client]'` on this "
                                  "machine (the same Ray version as the cluster).")
            kwargs.pop("include_dashboard")
        _check_reachable(address)
        # the cluster's nodes get densepipe's code from here; they need only its dependencies installed
        runtime_env["py_modules"] = _packages()
        runtime_env["env_vars"] = {k: v for k, v in os.environ.items()
                                   if k.startswith(("AWS_", "DRP_", "HF_HUB_OFFLINE", "GOOGLE_APPLICATION"))}
        try:
            ray.init(address=address, runtime_env=runtime_env, **kwargs)
        except ConnectionError as e:
            raise ClusterError(f"--ray-address {address}: no Ray cluster answered ({e}). Start one with "
                               "`ray start --head`, or leave --ray-address out to run on a local Ray.") from e
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Ray retries an unreachable address for minutes; a TCP connect says at once whether anything listens."""
    import socket

    if address == "auto":
        return
    host, _, port = address.split("://")[-1].rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return
    except ValueError:
        raise ConfigError(f"--ray-address {address}: expected 'auto', host:port or ray://host:port.") from None
    except OSError as e:
        raise ClusterError(f"--ray-address {address}: nothing answers there ({e.strerror or e}). Start the head "
                           "with `ray start --head` (its address is printed), or leave --ray-address out to run on "
                           "a local Ray.") from None


def quiet_worker() -> None:
    """Run in every worker of the local Ray: Ray Train's placement-group cleaner asks the State API (served by
    the dashboard, which densepipe does not start) about the training controller every second and warns each
    time it cannot. Its job is a safety net — a placement group is removed with the actor that created it, and
    the cleaner is stopped when training ends — so on a local Ray the warning is noise."""
    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").setLevel(logging.ERROR)


def cluster_gpus() -> int:
    import ray

    return int(ray.cluster_resources().get("GPU", 0))


_PRIVATE = False  # True once this process started its own local Ray (one node, all of it densepipe's)


def worker_request(cpus_per_worker: float | None, gpus_per_worker: float | None,
                   workers: int = 1) -> dict[str, float]:
    """What one worker asks Ray for: 1 CPU by default on a cluster (never a share of the cluster's total), and 1
    GPU when the cluster has GPUs. On the private local Ray densepipe starts itself, the machine is the job's:
    the default there is the machine's CPUs shared between the workers (torch threads follow the request)."""
    import ray

    gpus = gpus_per_worker if gpus_per_worker is not None else (1.0 if cluster_gpus() else 0.0)
    if cpus_per_worker is not None:
        cpus = cpus_per_worker
    elif _PRIVATE:
        cpus = float(max(1, int(ray.cluster_resources().get("CPU", 1)) // max(1, workers)))
    else:
        cpus = 1.0
    if cpus < 0 or gpus < 0:
        raise ConfigError(f"cpus_per_worker and gpus_per_worker must be >= 0, got {cpus} and {gpus}.")
    return {"CPU": float(cpus), "GPU": float(gpus)}


def check_fits(per_worker: dict[str, float], workers: int, what: str, option: str = "--cpus-per-worker") -> None:
    """Refuse at once, with the numbers, a request that the cluster's live nodes cannot place: a worker that no
    node fits, or more workers than all nodes together hold."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    need = {k: v for k, v in per_worker.items() if v > 0}

    def slots(res: dict) -> int:
        return min((int(res.get(k, 0) // v) for k, v in need.items()), default=workers)

    places = [slots(n["Resources"]) for n in nodes]
    if sum(places) >= workers:
        return
    have = "; ".join(f"node {n['NodeManagerAddress']}: CPU {n['Resources'].get('CPU', 0):g}, "
                     f"GPU {n['Resources'].get('GPU', 0):g}" for n in nodes)
    fix = (f"lower {option} or --num-workers, or add nodes" if any(places) else
           f"lower {option} to at most what one node has")
    raise ClusterError(f"{what}: {workers} worker(s) × {need} do not fit this cluster ({have}; room for "
                       f"{sum(places)}): {fix}.")


def node_id() -> str:
    """The Ray node this code runs on (recorded by workers, so tests and logs can see where work ran)."""
    import ray

    return ray.get_runtime_context().get_node_id()


# -- storage ---------------------------------------------------------------------------------------------------
_DONE = ".densepipe-upload.json"  # a sibling of the folder (FOLDER.densepipe-upload.json), never inside it, so a
# published model folder hashes the same as the original


class Storage:
    """A run's artifact root. ``publish_dir`` copies a finished local folder up (files first, then a marker, so
    a reader never takes a half-uploaded folder for a whole one); ``fetch_dir`` brings one down into a node-local
    cache once (keyed by the marker's stamp)."""

    def __init__(self, root: str | os.PathLike):
        import pyarrow.fs as pafs

        root = str(root)
        if "://" not in root:
            root = str(Path(root).expanduser().resolve())
            Path(root).mkdir(parents=True, exist_ok=True)
        self.root = root.rstrip("/")
        try:
            self.fs, self.base = pafs.FileSystem.from_uri(self.root)
        except Exception as e:  # pyarrow raises ArrowInvalid / OSError with its own wording
            raise ConfigError(f"storage {root!r}: {e}. Use a local folder or a URI such as s3://bucket/prefix "
                              "(add ?endpoint_override=host:port&scheme=http for an S3-compatible server).") from e
        self.base = self.base.rstrip("/")

    @property
    def is_local(self) -> bool:
        return "://" not in self.root

    def uri(self, key: str) -> str:
        """The URI of ``key`` below the root (query parameters such as endpoint_override kept)."""
        if self.is_local:
            return str(Path(self.root) / key)
        head, _, query = self.root.partition("?")
        return f"{head}/{key.strip('/')}" + (f"?{query}" if query else "")

    def _path(self, key: str) -> str:
        return f"{self.base}/{key.strip('/')}"

    def publish_dir(self, local: str | os.PathLike, key: str, stamp: str) -> str:
        """Upload ``local`` (a finished folder) to ``key`` unless the same stamp is already there; its URI."""
        import pyarrow.fs as pafs

        marker = self._path(f"{key.rstrip('/')}{_DONE}")
        if self._read_marker(marker) == stamp:
            return self.uri(key)
        local = Path(local)
        self.fs.create_dir(self._path(key), recursive=True)
        for f in sorted(p for p in local.rglob("*") if p.is_file()):
            rel = f.relative_to(local).as_posix()
            self.fs.create_dir(self._path(f"{key}/{Path(rel).parent.as_posix()}"), recursive=True)
            pafs.copy_files(str(f), self._path(f"{key}/{rel}"), source_filesystem=pafs.LocalFileSystem(),
                            destination_filesystem=self.fs)
        with self.fs.open_output_stream(marker) as out:
            out.write(stamp.encode())
        return self.uri(key)

    def _read_marker(self, marker: str) -> str | None:
        import pyarrow.fs as pafs

        if self.fs.get_file_info(marker).type != pafs.FileType.File:
            return None
        with self.fs.open_input_stream(marker) as f:
            return f.read().decode()


def fetch_dir(uri: str, cache: str | os.PathLike | None = None) -> Path:
    """A node-local copy of the published folder at ``uri`` (a local path is used where it is). Downloaded once
    per stamp into ``cache`` (default: $DRP_NODE_CACHE or the temp folder), written aside then renamed."""
    import hashlib

    import pyarrow.fs as pafs

    if "://" not in uri:
        return Path(uri)
    fs, path = pafs.FileSystem.from_uri(uri)
    path = path.rstrip("/")
    info = fs.get_file_info(f"{path}{_DONE}")
    if info.type != pafs.FileType.File:
        raise ClusterError(f"{uri}: not a finished upload (no {_DONE} beside it); the stage that writes it did "
                           "not finish.")
    with fs.open_input_stream(f"{path}{_DONE}") as f:
        stamp = f.read().decode()
    root = Path(cache or os.environ.get("DRP_NODE_CACHE") or Path(tempfile.gettempdir()) / "densepipe-node-cache")
    local = root / hashlib.sha256(f"{uri.split('?')[0]}:{stamp}".encode()).hexdigest()[:20]
    if local.is_dir():  # only ever appears whole (renamed into place)
        return local
    tmp = local.with_name(f".{local.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for entry in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
        rel = entry.path[len(path) + 1:]
        if entry.type != pafs.FileType.File:
            continue
        dest = tmp / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(entry.path, str(dest), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    try:
        os.replace(tmp, local)
    except OSError:  # another worker on this node finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return local


def open_storage(root: str | None) -> Storage | None:
    return Storage(root) if root else None
