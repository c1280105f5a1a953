"""Encode a corpus: list it (inputs.py), plan it against what the output folder holds (plan.py), run its tasks
here, in worker processes (local.py) or on Ray (ray_runner.py), and account for every clip: the summary
(summary.py) and, for latents, each shard once its clips are done (shards.py).

Nothing here prints: a Listener hears the progress and the lines worth showing, so the CLI owns the bar.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

from bitstream.atomic import not_a_socket, only_new, remove_stale
from cdtcodec.corpus import DEFAULT_SHARD_SIZE, shards
from cdtcodec.corpus.errors import BadCorpusArgument, CorpusError
from cdtcodec.corpus.inputs import Clip, discover
from cdtcodec.corpus.local import Handler, forget_temporaries, run_here, run_processes
from cdtcodec.corpus.plan import Expected, Plan, Slot, check_cdt, entry_held, plan_cdt, plan_latents, skipped
from cdtcodec.corpus.summary import SUMMARY_NAME, Totals, totals, write_summary
from cdtcodec.corpus.worker import LATENT_DTYPES, Outcome, Settings, Task, describe
from cdtcodec.interrupts import Interrupted
from cdtcodec.overwrite import Overwrite, refuse_inputs


@dataclass
class Tally:
    """Where the run stands, for a progress bar: clips and frames, and an estimate of the frames in all."""

    files: int  # clips this run encodes
    skipped: int = 0  # clips already complete
    refused: int = 0  # clips failed before encoding (refused outputs)
    done: int = 0  # of `files`: finished, encoded or failed
    failed: int = 0
    encoded: int = 0
    frames_finished: int = 0  # frames of the encoded clips
    running: dict[int, tuple[int, int | None]] = field(default_factory=dict)  # clip -> (done, expected)

    @property
    def frames(self) -> int:
        return self.frames_finished + sum(d for d, _ in self.running.values())

    @property
    def frames_expected(self) -> int | None:
        """The frames of the encoded clips and the expected frames of the running ones, and their mean for
        each clip not started yet; None until one clip's length is known."""
        known = [t for _, t in self.running.values() if t]
        clips = self.encoded + len(known)
        if not clips:
            return None
        frames = self.frames_finished + sum(known)
        mean = frames / clips
        waiting = self.files - self.done - len(self.running)
        unsized = sum(max(d, mean) for d, t in self.running.values() if not t)
        return round(frames + mean * waiting + unsized)


class Listener:
    """What a corpus run tells its caller: the progress, lines worth showing, and what it is doing."""

    def progress(self, tally: Tally) -> None:
        pass

    def say(self, line: str) -> None:
        pass

    def status(self, text: str) -> None:
        pass


@dataclass
class CorpusResult:
    outcomes: list[Outcome]
    totals: Totals
    summary: str
    out_dir: str
    load_seconds: list[float]  # each worker's model load
    interrupted: Interrupted | None = None
    shown: dict[int, str] = field(default_factory=dict)  # clip index -> its path as the user spelt it

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]


class _Run(Handler):
    """The run's bookkeeping: each finished clip's outcome, its line, and (latents) its shard once whole."""

    def __init__(self, plan: Plan, clips: list[Clip], listener: Listener):
        self.plan, self.listener = plan, listener
        self.clips = {c.index: c for c in clips}
        self.outcomes: dict[int, Outcome] = dict(plan.outcomes)
        self.slot_of = {c.index: slot for slot in plan.slots for c in slot.clips}
        self.tasks = {t.clip.index: t for t in plan.tasks}
        self.load_seconds: list[float] = []
        self.notes_said: set[str] = set()
        reused = sum(len(slot.reused) for slot in plan.slots if not slot.frozen)  # taken over: not encoded again
        settled = [o.status for o in plan.outcomes.values()]
        self.tally = Tally(len(plan.tasks), skipped=reused + settled.count("skipped"), refused=settled.count("failed"))

    def loaded(self, seconds: float) -> None:
        self.load_seconds.append(seconds)

    def frames(self, task: Task, done: int, total: int | None) -> None:
        self.tally.running[task.clip.index] = (done, total)
        self.listener.progress(self.tally)

    def finished(self, outcome: Outcome) -> None:
        clip = self.clips[outcome.index]
        for warning in outcome.warnings:
            self.listener.say(f"warning: {clip.shown}: {warning}")
        if outcome.note and outcome.note not in self.notes_said:  # the same for every clip, as a rule: once
            self.notes_said.add(outcome.note)
            self.listener.say(f"note: {outcome.note}")
        if outcome.status == "failed":
            self.listener.say(f"failed: {clip.shown}: {outcome.error}")
        self.tally.running.pop(outcome.index, None)
        self.tally.done += 1
        self.tally.failed += outcome.status == "failed"
        if outcome.status == "encoded":
            self.tally.encoded += 1
            self.tally.frames_finished += outcome.frames
        slot = self.slot_of.get(outcome.index)
        if slot is None:
            self.outcomes[outcome.index] = outcome
        else:
            self._staged(slot, outcome)
        self.listener.progress(self.tally)

    def _staged(self, slot: Slot, outcome: Outcome) -> None:
        if outcome.status == "encoded":
            entry = shards.read_staged(self.tasks[outcome.index].output)
            if entry is None:
                outcome.status, outcome.error = "failed", "its staged latents vanished before its shard was written"
            else:
                slot.staged[outcome.index] = entry
        slot.held[outcome.index] = outcome
        slot.pending.discard(outcome.index)
        if not slot.pending:
            self.write(slot)

    def write(self, slot: Slot) -> None:
        """Write a shard whose clips are all done, then settle their outcomes and drop their staged files."""
        self.listener.status(f"writing {os.path.basename(slot.path)}")
        entries = slot.entries()
        try:
            with only_new(*[slot.path] if slot.new_only else []):
                shards.write_shard(slot.path, entries)
        except FileExistsError as e:  # another run wrote the shard meanwhile: its clips fail, staged stays
            if not slot.new_only:
                raise
            self._lost(slot, describe(e))
            return
        slot.written = True
        for entry in entries:
            if entry.tar is None:
                shards.remove_staged(entry.npy[: -len(shards.LATENTS)])
        for clip in slot.clips:
            if clip.index in slot.held:
                self.outcomes[clip.index] = slot.held[clip.index]
            elif clip.index in slot.reused:
                self.outcomes[clip.index] = skipped(clip, f"{slot.path}#{clip.key}",
                                                    entry_held(slot.reused[clip.index].meta))
        self.listener.status("")

    def _lost(self, slot: Slot, error: str) -> None:
        """A shard another run wrote while this one worked: each of its clips fails with `error` (this run's
        staged latents stay, for a rerun with -y to take)."""
        slot.frozen = True
        for clip in slot.clips:
            held = slot.held.get(clip.index)
            if held is not None and held.status == "failed":  # failed on its own, and said so
                self.outcomes[clip.index] = held
                continue
            self.outcomes[clip.index] = Outcome(clip.index, clip.source, f"{slot.path}#{clip.key}", "failed",
                                                error=error, warnings=held.warnings if held else [])
            self.listener.say(f"failed: {clip.shown}: {error}")
            self.tally.failed += held is not None
        self.listener.status("")

    def unfinished(self, since_ns: int, expect: Expected) -> list[Outcome]:
        """Outcomes for the clips a stopped run did not settle. A .cdt that a worker finished (renamed into
        place since `since_ns`) before its report could arrive counts as encoded."""
        left = []
        for index, clip in self.clips.items():
            if index in self.outcomes:
                continue
            task = self.tasks.get(index)
            if task is not None and not task.entry and _written_since(task.output, since_ns):
                state, _, held = check_cdt(task.output, clip.source, expect)
                if state == "complete":
                    size, pixels = held["bytes"], held["frames"] * held["width"] * held["height"]
                    left.append(Outcome(index, clip.source, task.output, "encoded", held["frames"], size,
                                        8 * size / max(1, pixels), 0.0, "", held["width"], held["height"],
                                        held["fps"], note="finished as the run was stopped"))
                    continue
            slot = self.slot_of.get(index)
            output = (task.entry or task.output) if task else ""
            held = slot.held.get(index) if slot else None
            if held is not None and held.status == "encoded":
                error = "staged; its shard was not written (a rerun writes it)"
            elif held is not None:  # failed: its shard was never written, but that is not why
                left.append(held)
                continue
            else:
                error = "not finished"
            left.append(Outcome(index, clip.source, output, "interrupted", error=error))
        return left


def _written_since(path: str, since_ns: int) -> bool:
    try:
        return os.stat(path).st_mtime_ns >= since_ns
    except OSError:
        return False


def _out_dir(path: str) -> str:
    out = os.path.abspath(path.rstrip("/" + os.sep) or os.sep)
    if os.path.lexists(out) and not os.path.isdir(out):
        raise CorpusError(f"{path}: is not a directory (a corpus is written into a folder)")
    parent = os.path.dirname(out)
    if not os.path.isdir(parent):
        raise CorpusError(f"{path}: its parent folder {parent} does not exist")
    os.makedirs(out, exist_ok=True)
    if not os.access(out, os.W_OK | os.X_OK):
        raise CorpusError(f"{path}: output folder is not writable")
    return out


def _check_summary(path: str, clips: list[Clip]) -> None:
    """Before any work: the summary can be written, and never onto an input."""
    parent = os.path.dirname(path)
    if os.path.isdir(path):
        raise BadCorpusArgument("summary", f": {path} is a directory")
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise BadCorpusArgument("summary", f": the folder {parent} does not exist or is not writable")
    refuse_inputs(path, [c.source for c in clips])
    not_a_socket(path)


def _expected(settings: Settings) -> Expected:
    from cdtcodec.codec import check_encode_args
    from cdtcodec.weights import WeightsError, file_sha256, weights_path

    step = check_encode_args(settings.quality, settings.step, seed=settings.seed, steps=settings.steps,
                             entropy=settings.entropy)
    weights = weights_path(settings.model)
    if not weights.is_file():
        raise WeightsError(f"{settings.model}: no such weights file")
    digest = file_sha256(weights)
    if settings.step is None:  # a quality: the global step of the weights' own quality scale (quantize.scale_for)
        from cdtcodec.rate.quantize import DEFAULT_QUALITY, load_scale, scale_path

        if scale_path(weights).is_file() and (scale := load_scale(scale_path(weights))).weights_sha256 == digest:
            step = scale.global_step(DEFAULT_QUALITY if settings.quality is None else settings.quality)
    return Expected(digest, step, settings)


def encode_corpus(inputs: list[str], out_dir: str, settings: Settings, *, jobs: int | None = None,
                  ray: str | None = None,
                  rule: Overwrite = Overwrite.ASK, shard_size: int = DEFAULT_SHARD_SIZE, summary: str | None = None,
                  listener: Listener | None = None, ask=None, interactive: bool | None = None) -> CorpusResult:
    """Encode every clip the inputs name into `out_dir` (.cdt files, or latent shards with settings.latents);
    see the package docstring. A clip's failure is its outcome, never the run's; the run fails (raises) only
    when it cannot go on at all. A signal ends it with the summary written and the result's `interrupted` set.
    `ray`: None (this machine: `jobs` worker processes, default one, in this process), "local" or a cluster
    address (`jobs` actors, default as many as the cluster's CPUs or GPUs hold)."""
    started, started_ns = time.perf_counter(), time.time_ns()
    listener = listener or Listener()
    if jobs is not None and jobs < 1:
        raise BadCorpusArgument("jobs", " must be >= 1")
    if shard_size < 1:
        raise BadCorpusArgument("shard_size", " must be >= 1")
    if settings.latents is not None and settings.latents not in LATENT_DTYPES:
        raise BadCorpusArgument("latents", f" must be one of {', '.join(LATENT_DTYPES)}, got {settings.latents!r}")
    expect = _expected(settings)
    out = _out_dir(out_dir)
    remove_stale(os.path.join(out, SUMMARY_NAME))  # what killed runs left there and in /tmp (live runs' stay)
    clips = discover(inputs, exclude=out)
    summary = os.path.abspath(summary or os.path.join(out, SUMMARY_NAME))
    _check_summary(summary, clips)
    if settings.latents:
        plan = plan_latents(clips, out, expect, rule, shard_size, ask=ask, interactive=interactive)
    else:
        plan = plan_cdt(clips, out, expect, rule, ask=ask, interactive=interactive)
    run = _Run(plan, clips, listener)
    for note in plan.notes:
        listener.say(f"note: {note}")
    for outcome in sorted(plan.outcomes.values(), key=lambda o: o.index):
        if outcome.status == "failed":
            listener.say(f"failed: {run.clips[outcome.index].shown}: {outcome.error}")
    interrupted = None
    try:
        for slot in plan.slots:
            if not slot.frozen and not slot.pending:
                run.write(slot)  # everything it holds was done before: reused entries only
        listener.progress(run.tally)
        if ray is not None:
            from cdtcodec.corpus.ray_runner import run_ray

            run_ray(ray, plan.tasks, settings, jobs, run, listener.status)
        elif min(jobs or 1, len(plan.tasks)) <= 1:  # one worker: this process, no forkserver to start
            run_here(plan.tasks, settings, run)
        else:
            run_processes(plan.tasks, settings, jobs, run)
    except KeyboardInterrupt as e:  # a signal (Interrupted), or Ctrl-C as Python raises it
        interrupted = e if isinstance(e, Interrupted) else Interrupted(signal.SIGINT)
    finally:
        outcomes = list(run.outcomes.values()) + run.unfinished(started_ns, expect)
        for outcome in outcomes:
            if outcome.status == "interrupted" and outcome.index in run.tasks:
                forget_temporaries(run.tasks[outcome.index])
        outcomes.sort(key=lambda o: o.index)
        write_summary(summary, outcomes)
        if settings.latents:
            try:
                os.rmdir(os.path.join(out, shards.STAGING))  # only once empty
            except OSError:
                pass
    return CorpusResult(outcomes, totals(outcomes, time.perf_counter() - started), summary, out, run.load_seconds,
                        interrupted, {c.index: c.shown for c in clips})
