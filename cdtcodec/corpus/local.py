"""Running a corpus's tasks on this machine: in the calling process (one job) or in N worker processes.

Each worker process loads the model once and takes one task at a time from the caller, over its own pipe,
so the caller always knows which clip a worker holds: a worker that dies (killed, out of memory) fails that
clip alone and a fresh worker takes its place. Workers are forked from a forkserver that has imported torch
once. A signal that reaches the caller alone (kill, timeout) is passed on to the workers; each one's writers
remove their temporaries, and whatever a worker killed outright left is removed by name afterwards.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from dataclasses import replace
from multiprocessing.connection import wait

from bitstream.atomic import remove_leftovers
from cdtcodec.corpus.errors import CorpusError
from cdtcodec.corpus.worker import Outcome, Settings, Task, Worker, describe, split_threads
from cdtcodec.interrupts import FATAL_SIGNALS, Interrupted, interrupt_on, signals_caught

STOP_WAIT_S = 30  # how long stopped workers get to clean up before they are killed


class Handler:
    """What an executor reports, as it happens (the run's bookkeeping and progress bar listen)."""

    def loaded(self, seconds: float) -> None:
        """A worker loaded the model in `seconds`."""

    def frames(self, task: Task, done: int, total: int | None) -> None:
        """`done` frames of the task's clip are encoded (0 when it starts; `total` is an estimate or None)."""

    def finished(self, outcome: Outcome) -> None:
        """A task ended (encoded or failed)."""


def forget_temporaries(task: Task) -> None:
    """Remove what a worker stopped outright left of the task's output (its writers' temporaries)."""
    for path in ((task.output + ".latents.npy", task.output + ".json") if task.entry else (task.output,)):
        remove_leftovers(path)


def run_here(tasks: list[Task], settings: Settings, handler: Handler) -> None:
    """One worker, in this process: the model loaded once, before the first task."""
    if not tasks:
        return
    worker = Worker(settings)
    handler.loaded(worker.load_seconds)
    with interrupt_on(*FATAL_SIGNALS) as interrupted:
        for task in tasks:
            def progress(done: int, total: int | None, task=task) -> None:
                if interrupted:  # PyAV can swallow the exception the signal raised while FFmpeg was busy
                    raise Interrupted(interrupted[0])
                handler.frames(task, done, total)

            outcome = worker.run(task, progress)
            if interrupted:
                raise Interrupted(interrupted[0])
            handler.finished(outcome)


# ---------------------------------------------------------------------------------------------------------
# worker processes

def _serve(conn, settings: Settings, slot: int, jobs: int) -> None:
    """A worker process: load the model, then encode each task the caller sends until it sends None."""
    with signals_caught(*FATAL_SIGNALS) as received:
        try:
            from cdtcodec.allocator import keep_freed_memory

            keep_freed_memory()  # as the command line runs
            try:
                worker = Worker(settings, slot, jobs)
            except Exception as e:
                conn.send(("fatal", describe(e)))
                return
            conn.send(("ready", worker.load_seconds))
            while True:
                task = conn.recv()
                if task is None:
                    return

                def progress(done: int, total: int | None) -> None:
                    if received:
                        raise Interrupted(received[0])
                    conn.send(("frames", done, total))

                outcome = worker.run(task, progress)
                if received:
                    raise Interrupted(received[0])
                conn.send(("done", outcome))
        except (KeyboardInterrupt, EOFError, BrokenPipeError):
            return  # a signal, or the caller is gone: the writers have removed their temporaries


class _Process:
    def __init__(self, ctx, settings: Settings, slot: int, jobs: int):
        self.slot = slot
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_serve, args=(child, settings, slot, jobs), daemon=True,
                                   name=f"cdtcodec-worker-{slot}")
        self.process.start()
        child.close()
        self.ready = False
        self.task: Task | None = None
        self.closed = False

    def give(self, task: Task | None) -> None:
        self.task = task
        try:
            self.conn.send(task)
        except (BrokenPipeError, OSError):
            pass  # it died; its sentinel says so next
        if task is None:
            self.closed = True

    def exit_reason(self) -> str:
        code = self.process.exitcode
        if code is not None and code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"


def run_processes(tasks: list[Task], settings: Settings, jobs: int, handler: Handler) -> None:
    """`jobs` worker processes (no more than there are tasks), the CPU threads split between them."""
    if not tasks:
        return
    jobs = max(1, min(jobs, len(tasks)))
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "cdtcodec.codec", "cdtcodec.corpus.worker", "cdtcodec.corpus.shards"])
    threads = split_threads(settings.threads, jobs)
    per_slot = [replace(settings, threads=threads[i]) for i in range(jobs)]
    queue = deque(tasks)
    procs: list[_Process] = []
    stop_signal = signal.SIGTERM
    try:
        procs = [_Process(ctx, per_slot[i], i, jobs) for i in range(jobs)]
        while any(not p.closed or p.process.is_alive() for p in procs):
            live = [p for p in procs if p.process.is_alive() or not p.closed]
            waitables = {p.conn: p for p in live}
            waitables.update({p.process.sentinel: p for p in live})
            for ready in wait(list(waitables)):
                p = waitables[ready]
                if p not in procs:
                    continue  # replaced already: its pipe and its sentinel were both ready
                if ready is p.conn:
                    try:
                        message = p.conn.recv()
                    except (EOFError, OSError):
                        message = None
                    if message is not None:
                        _handle(p, message, queue, handler)
                        continue
                p.process.join(timeout=5)
                if p.process.is_alive():
                    continue
                if not p.closed or p.task is not None:
                    procs[procs.index(p)] = _replace_dead(p, ctx, per_slot[p.slot], jobs, queue, handler)
    except Interrupted as e:
        stop_signal = e.signum
        raise
    finally:
        _stop(procs, stop_signal)


def _handle(p: _Process, message: tuple, queue: deque, handler: Handler) -> None:
    kind = message[0]
    if kind == "fatal":
        raise CorpusError(f"a worker could not start: {message[1]}")
    if kind == "ready":
        p.ready = True
        handler.loaded(message[1])
    elif kind == "frames" and p.task is not None:
        handler.frames(p.task, message[1], message[2])
        return
    elif kind == "done":
        p.task = None
        handler.finished(message[1])
    p.give(queue.popleft() if queue else None)


def _replace_dead(p: _Process, ctx, settings: Settings, jobs: int, queue: deque, handler: Handler) -> _Process:
    """A worker died: its clip fails (a clip that kills its worker would kill the next one too) and, while
    tasks remain, a fresh worker takes its place."""
    reason = p.exit_reason()
    p.conn.close()
    if not p.ready:
        raise CorpusError(f"a worker process died while loading the model ({reason})")
    if p.task is not None:
        task = p.task
        forget_temporaries(task)
        handler.finished(Outcome(task.clip.index, task.clip.source, task.entry or task.output, "failed",
                                 error=f"the worker process died ({reason})"))
    if not queue:
        p.closed, p.task = True, None
        return p
    return _Process(ctx, settings, p.slot, jobs)


def _stop(procs: list[_Process], signum: int) -> None:
    """End every worker: those still busy get `signum` (the caller's own signal, so they clean up as it
    would), then each gets STOP_WAIT_S to exit before it is killed; what a killed one left is removed."""
    with signals_caught(*FATAL_SIGNALS, raising=False):  # a second Ctrl-C must not cut this short
        for p in procs:
            if p.process.is_alive() and (p.task is not None or not p.closed):
                try:
                    os.kill(p.process.pid, signum)
                except OSError:
                    pass
        for p in procs:
            p.process.join(STOP_WAIT_S)
            if p.process.is_alive():
                p.process.kill()
                p.process.join()
            if p.task is not None:
                forget_temporaries(p.task)
            try:
                p.conn.close()
            except OSError:
                pass
