"""Running a corpus's tasks on Ray: Ray Data's map_batches over the task list, with a stateful class whose
actors each load the model once (a Worker) and encode one clip per call, on CPUs or one GPU each.

Actors write the same files a local worker does (the .cdt, or the staged latents), so the inputs and the
output folder must be on a file system every node sees (NFS, a cluster's shared disk); the caller, here,
hears each outcome as it arrives and does all the rest (summary, shards). `local` starts a Ray instance on
this machine with its cores; any other address is passed to ray.init (e.g. `auto` on a cluster node, or
`ray://HEAD:10001`). Ray is imported only here, and only when asked for.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import warnings

from cdtcodec.corpus.errors import BadCorpusArgument, CorpusError
from cdtcodec.corpus.inputs import Clip
from cdtcodec.corpus.local import Handler, forget_temporaries
from cdtcodec.corpus.worker import Outcome, Settings, Task, Worker, describe
from cdtcodec.interrupts import FATAL_SIGNALS

MISSING_RAY = " needs Ray, which is not installed: pip install 'cdtcodec[ray]' (or -r requirements-ray.txt)"


class _Encoder:
    """The stateful class of map_batches; a subclass made by _encoder_class carries the settings (as class
    attributes, so the actor's constructor takes no arguments from the object store)."""

    SETTINGS: dict = {}
    MEMORY_SHARE = 1

    def __init__(self):
        from cdtcodec.allocator import keep_freed_memory

        keep_freed_memory()
        self.worker = Worker(Settings(**self.SETTINGS), 0, self.MEMORY_SHARE)
        self.name = f"{os.uname().nodename}:{os.getpid()}"
        self.load_seconds = self.worker.load_seconds

    def __call__(self, batch: dict) -> dict:
        outcomes, loads = [], []
        for raw in batch["task"]:
            task = _task(json.loads(str(raw)))
            outcomes.append(json.dumps(self.worker.run(task).as_dict()))
            loads.append(self.load_seconds)
            self.load_seconds = 0.0  # reported with this actor's first clip only
        return {"outcome": outcomes, "load_seconds": loads, "worker": [self.name] * len(outcomes)}


def _encoder_class(settings: Settings, memory_share: int) -> type:
    return type("CdtcodecEncoder", (_Encoder,), {"SETTINGS": settings.as_dict(), "MEMORY_SHARE": memory_share,
                                                 "__module__": __name__})


def _row(task: Task) -> dict:
    return {"task": json.dumps({"clip": dataclasses.asdict(task.clip), "output": task.output, "entry": task.entry,
                                "new_only": task.new_only})}


def _task(d: dict) -> Task:
    return Task(Clip(**d["clip"]), d["output"], d["entry"], d.get("new_only", False))


def _quiet(ray) -> None:
    """No Ray banners, progress bars or execution plans in the middle of our progress bar."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    for name in ("enable_operator_progress_bars", "print_on_execution_start", "enable_auto_log_stats"):
        if hasattr(context, name):
            setattr(context, name, False)
    # A block is one clip: one that kills its actor (twice, see run_ray) is dropped, and reported here, not
    # allowed to end the run.
    context.max_errored_blocks = -1
    for name in ("ray", "ray.data", "ray.data._internal"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _start(ray, address: str) -> bool:
    """Start or join Ray; True when this call started it (and so stops it). Ray's own SIGTERM handler is put
    back to ours: a signal must stop the run the way it stops any other."""
    if ray.is_initialized():
        return False
    ours = {s: signal.getsignal(s) for s in FATAL_SIGNALS}
    common = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        if address == "local":
            ray.init(address="local", num_cpus=os.cpu_count() or 1, **common)
        else:
            ray.init(address=address, **common)
    except Exception as e:
        raise BadCorpusArgument("ray", f" {address}: cannot start or reach Ray: {describe(e)}") from None
    finally:
        for s, handler in ours.items():
            signal.signal(s, handler)
    return True


def _actors(ray, jobs: int | None, threads: int, gpus: bool, tasks: int) -> tuple[int, int]:
    """(actors, how many of them share one node's memory): `jobs`, else as many as the cluster holds."""
    cpus = max(1, threads)
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if jobs is None:
        total = ray.cluster_resources()
        jobs = int(total.get("GPU", 0)) if gpus else int(total.get("CPU", 1) // cpus)
        if jobs < 1:
            raise BadCorpusArgument("ray", ": the cluster has no " + ("GPU" if gpus else f"node with {cpus} CPUs"))
    jobs = max(1, min(jobs, tasks))
    per_node = max((int(n.get("GPU", 0)) if gpus else int(n.get("CPU", 0) // cpus) for n in nodes), default=1)
    return jobs, max(1, min(jobs, per_node))


def run_ray(address: str, tasks: list[Task], settings: Settings, jobs: int | None, handler: Handler,
            status=lambda text: None) -> None:
    if not tasks:
        return
    try:
        import ray
        import ray.data
    except ImportError:
        raise BadCorpusArgument("ray", MISSING_RAY) from None
    status("starting Ray" if address == "local" else f"connecting to Ray at {address}")
    owned = _start(ray, address)
    try:
        _quiet(ray)
        if settings.device == "auto":  # the cluster's GPUs, not this machine's
            settings = dataclasses.replace(settings, device="cuda" if ray.cluster_resources().get("GPU") else "cpu")
        gpus = settings.device.startswith("cuda")
        if gpus:  # Ray gives each actor its GPU (CUDA_VISIBLE_DEVICES): inside it, that one is cuda
            settings = dataclasses.replace(settings, device="cuda")
        threads = settings.threads or 1
        actors, share = _actors(ray, jobs, threads, gpus, len(tasks))
        settings = dataclasses.replace(settings, threads=threads)
        data = ray.data.from_items([_row(t) for t in tasks], override_num_blocks=len(tasks))
        # A dead actor is started again (its model loaded again) and its clip tried once more; a clip that
        # kills it twice is given up (Ray Data's defaults would retry it for ever). Ray 2.60 takes these two
        # only as `ray_remote_args`, which it warns are to go in 2.64 (requirements-ray.txt pins 2.60).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
            results = data.map_batches(_encoder_class(settings, share), batch_size=1,
                                       compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=threads,
                                       num_gpus=1 if gpus else 0, max_restarts=-1, max_task_retries=1)
        status(f"encoding on Ray: {actors} actor(s) of {threads} CPU thread(s)" + (" and 1 GPU" if gpus else ""))
        left = {t.clip.index: t for t in tasks}
        try:
            for row in results.iter_rows():
                if float(row["load_seconds"]):
                    handler.loaded(float(row["load_seconds"]))
                outcome = Outcome.from_dict(json.loads(str(row["outcome"])))
                left.pop(outcome.index, None)
                handler.finished(outcome)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # an actor that cannot start (the model), a cluster that went away
            raise CorpusError(f"the Ray run failed: {_ray_reason(e)}") from None
        for task in left.values():
            forget_temporaries(task)
            handler.finished(Outcome(task.clip.index, task.clip.source, task.entry or task.output, "failed",
                                     error="its Ray actor died on it twice (killed, out of memory); Ray gave up"))
    finally:
        status("")
        if owned:
            ray.shutdown()


def _ray_reason(e: BaseException) -> str:
    """The first line worth reading of a Ray error (its str carries the remote traceback)."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException) and cause is not e:
        return describe(cause)
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Traceback", "File ", "^", "ray::"))]
    return (useful[-1] if useful else type(e).__name__)[:300]
