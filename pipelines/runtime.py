"""Ray start-up: a quiet local Ray started in-process by default, or an existing cluster by address."""

from __future__ import annotations

import logging
import os


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start (or connect to) Ray once per process; no dashboard, Ray's own progress bars off."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=True,
                  ignore_reinit_error=True)
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, runtime_env={"worker_process_setup_hook": "pipelines.runtime.quiet_worker"},
                 **kwargs)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False


def quiet_worker() -> None:
    """Run in every worker of the local Ray: Ray Train's placement-group cleaner asks the State API (served by
    the dashboard, which densepipe does not start) about the training controller every second and warns each
    time it cannot. Its job is a safety net — a placement group is removed with the actor that created it, and
    the cleaner is stopped when training ends — so on a local Ray the warning is noise."""
    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").setLevel(logging.ERROR)


def cluster_gpus() -> int:
    import ray

    return int(ray.cluster_resources().get("GPU", 0))
