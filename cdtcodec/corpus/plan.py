"""What a corpus run does with each clip, given what the output folder already holds.

A finished output is never encoded again unless asked (-y): a .cdt whose header, index, trailer and every
record's CRC check out (no entropy decoding), made with the same weights, quantizer step, seed, sampling steps
(when given) and coder (unless auto), and newer than its input; for latents, a shard holding exactly its
clips, each with the same identity (shards.IDENTITY) and intact data. What is damaged or missing (a partial
output: a killed run's, a failed clip's) is made again; an output made otherwise (other settings, an input
changed since) is replaced only with -y or a yes on a terminal, else its clip fails and says so; -n replaces
nothing. The temporaries a killed run left (AtomicOutput names) are removed before an output is made again.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field

from bitstream import BitstreamError, CdtReader
from bitstream.atomic import remove_leftovers, special_file
from cdtcodec.corpus import shards
from cdtcodec.corpus.inputs import Clip
from cdtcodec.corpus.worker import Outcome, Settings, Task
from cdtcodec.overwrite import Overwrite, may_replace


@dataclass
class Slot:
    """One latent shard of the plan: its clips, the entries it takes over, and the clips still to encode."""

    index: int
    path: str
    clips: list[Clip]
    reused: dict[int, shards.Entry] = field(default_factory=dict)  # clip index -> entry kept from before
    pending: set[int] = field(default_factory=set)  # clip indices still to encode
    staged: dict[int, shards.Entry] = field(default_factory=dict)  # clip index -> entry this run staged
    held: dict[int, Outcome] = field(default_factory=dict)  # outcomes that wait for the shard to be written
    frozen: bool = False  # left as it is (complete, or refused): never written by this run
    new_only: bool = False  # absent when planned, without -y: one that appears meanwhile is kept (only_new)
    written: bool = False

    def entries(self) -> list[shards.Entry]:
        """What the shard holds once written, in input order."""
        found = (self.staged.get(c.index) or self.reused.get(c.index) for c in self.clips)
        return [entry for entry in found if entry is not None]


@dataclass
class Plan:
    tasks: list[Task]
    outcomes: dict[int, Outcome]  # clips settled before any encoding: skipped (complete) or failed (refused)
    notes: list[str]
    slots: list[Slot] = field(default_factory=list)


@dataclass(frozen=True)
class Expected:
    """What this run's outputs are made with, to tell a finished output from one made otherwise."""

    weights_sha256: str
    step: float
    settings: Settings


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _mkdirs(path: str) -> str:
    """'' when the output's folder exists or was made, else why not."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return ""
    except OSError as e:
        return f"cannot make the folder {os.path.dirname(path)}: {e.strerror or e}"


def check_cdt(path: str, source: str, expect: Expected) -> tuple[str, str, dict]:
    """("complete" | "damaged" | "other", why, what the file holds) for an existing .cdt output."""
    s = expect.settings
    try:
        with CdtReader(path) as r:
            h = r.header
            for i in range(r.num_chunks):  # every record's CRC: reads the file once, decodes nothing
                r.chunk_payload(i)
            for _ in r.audio_packets():
                pass
            size = r.stats.file_bytes
    except BitstreamError as e:
        return "damaged", " ".join(str(e).split()), {}
    except OSError as e:
        return "damaged", e.strerror or str(e), {}
    held = {"frames": h.num_frames, "bytes": size, "width": h.width, "height": h.height,
            "fps": f"{h.fps_num}/{h.fps_den}" if h.fps_den != 1 else str(h.fps_num)}
    if h.weights_hash.hex() != expect.weights_sha256:
        return "other", f"made with other weights ({h.model_id}, sha256 {h.weights_hash.hex()[:12]}...)", held
    step = math.exp(sum(math.log(q) for q in h.quant_step) / len(h.quant_step))  # per-channel: the global step
    if not math.isclose(step, expect.step, rel_tol=1e-6):
        return "other", f"quantizer step {step:g}, not {expect.step:g}", held
    if h.seed != s.seed:
        return "other", f"seed {h.seed}, not {s.seed}", held
    if s.steps is not None and h.sampling_steps != s.steps:
        return "other", f"{h.sampling_steps} sampling steps, not {s.steps}", held
    if s.entropy != "auto" and h.entropy_coder != s.entropy:
        return "other", f"entropy coder {h.entropy_coder}, not {s.entropy}", held
    try:
        if os.stat(path).st_mtime_ns < os.stat(source).st_mtime_ns:
            return "other", "older than its input (the input changed since)", held
    except OSError:
        pass  # a missing input: its encode fails and says so; the output stays
    return "complete", "", held


def entry_held(meta: dict) -> dict:
    """What a latent entry holds, as check_cdt says it of a .cdt (for a skipped clip's outcome)."""
    return {"frames": int(meta.get("frames", 0)), "bytes": int(meta.get("latents_bytes", 0)),
            "width": int(meta.get("width", 0)), "height": int(meta.get("height", 0)), "fps": str(meta.get("fps", ""))}


def skipped(clip: Clip, output: str, held: dict) -> Outcome:
    """The outcome of a clip whose output was complete before the run."""
    frames, size, w, h = held.get("frames", 0), held.get("bytes", 0), held.get("width", 0), held.get("height", 0)
    return Outcome(clip.index, clip.source, output, "skipped", frames, size, 8 * size / max(1, frames * w * h),
                   0.0, "", w, h, str(held.get("fps", "")))


def _failed(clip: Clip, output: str, error: str) -> Outcome:
    return Outcome(clip.index, clip.source, output, "failed", error=error)


def _replace_question(count: int, out_dir: str, example: str) -> str:
    return (f"{count} output(s) in {out_dir} were made otherwise (e.g. {example}). Encode them again? [y/N] ")


def plan_cdt(clips: list[Clip], out_dir: str, expect: Expected, rule: Overwrite, *, ask=None,
             interactive: bool | None = None) -> Plan:
    inputs = {i for i in (_identity(c.source) for c in clips) if i is not None}
    tasks, outcomes, notes = [], {}, []
    stale: list[tuple[Clip, str, str, dict]] = []
    todo: list[tuple[Clip, str]] = []
    for clip in clips:
        out = os.path.join(out_dir, clip.name + ".cdt")
        if not os.path.lexists(out):
            todo.append((clip, out))
            continue
        if _identity(out) in inputs:
            outcomes[clip.index] = _failed(clip, out, f"{out} is an input; refusing to write onto it")
        elif special_file(out) == "socket":
            outcomes[clip.index] = _failed(clip, out, f"{out} is a socket, which cannot be written into as a file")
        elif os.path.isdir(out):
            outcomes[clip.index] = _failed(clip, out, f"{out} is a directory")
        elif rule is Overwrite.ALWAYS:
            todo.append((clip, out))
        else:
            state, why, held = check_cdt(out, clip.source, expect)
            if state == "complete":
                outcomes[clip.index] = skipped(clip, out, held)
            elif rule is Overwrite.NEVER:
                outcomes[clip.index] = _failed(clip, out, f"{out} exists ({why}); not overwritten (-n)")
            elif state == "damaged":
                notes.append(f"{out} is incomplete or damaged ({why}); encoding it again")
                todo.append((clip, out))
            else:
                stale.append((clip, out, why, held))
    if stale:
        clip, out, why, _ = stale[0]
        question = _replace_question(len(stale), out_dir, f"{os.path.relpath(out, out_dir)}: {why}")
        if may_replace(rule, question, interactive=interactive, **({"ask": ask} if ask else {})):
            todo += [(c, o) for c, o, _, _ in stale]
        else:
            for c, o, w, _ in stale:
                outcomes[c.index] = _failed(c, o, f"{o} exists ({w}); pass -y to encode it again")
    for clip, out in sorted(todo, key=lambda t: t[0].index):
        problem = _mkdirs(out)
        if problem:
            outcomes[clip.index] = _failed(clip, out, problem)
            continue
        remove_leftovers(out)
        tasks.append(Task(clip, out, new_only=rule is not Overwrite.ALWAYS and not os.path.lexists(out)))
    return Plan(tasks, outcomes, notes)


def _wanted(clip: Clip, expect: Expected) -> tuple | None:
    try:
        ident = shards.source_identity(clip.source)
    except OSError:
        return None  # a missing input: encoding it reports why
    s = expect.settings
    values = {**ident, "start_s": s.start_s, "max_frames": s.max_frames, "dtype": s.latents,
              "weights_sha256": expect.weights_sha256}
    return tuple(values[k] for k in shards.IDENTITY)


def plan_latents(clips: list[Clip], out_dir: str, expect: Expected, rule: Overwrite, shard_size: int, *,
                 ask=None, interactive: bool | None = None) -> Plan:
    staging = os.path.join(out_dir, shards.STAGING)
    if rule is Overwrite.ALWAYS:
        shutil.rmtree(staging, ignore_errors=True)
    tasks, outcomes, notes, slots = [], {}, [], []
    stale_slots: list[tuple[Slot, str]] = []
    for k in range(0, len(clips), shard_size):
        slot = Slot(k // shard_size, os.path.join(out_dir, shards.SHARD_NAME.format(k // shard_size)),
                    clips[k : k + shard_size])
        slots.append(slot)
        existing: dict[str, shards.Entry] = {}
        damaged = ""
        if os.path.lexists(slot.path) and rule is not Overwrite.ALWAYS:
            try:
                existing = {e.key: e for e in shards.shard_entries(slot.path)}
            except shards.ShardError as e:
                damaged = str(e)
        stale = ""
        for clip in slot.clips:
            want = _wanted(clip, expect)
            entry = existing.get(clip.key)
            # a vanished input keeps its entry: nothing can tell it is stale, and its latents would be lost
            if entry is not None and (want is None or entry.identity() == want) and shards.verify(entry):
                slot.reused[clip.index] = entry
                continue
            if entry is not None and want is not None and entry.identity() != want and not stale:
                stale = f"{clip.key}: made from another source, window, dtype or weights"
            staged = shards.read_staged(shards.staged_base(out_dir, clip.key)) if rule is not Overwrite.ALWAYS else None
            if staged is not None and staged.key == clip.key and want is not None and staged.identity() == want \
                    and shards.verify(staged):
                slot.reused[clip.index] = staged
        complete = (not damaged and set(existing) == {c.key for c in slot.clips}
                    and all(slot.reused.get(c.index) is existing[c.key] for c in slot.clips))
        if complete:
            slot.frozen = True
            for clip in slot.clips:
                outcomes[clip.index] = skipped(clip, f"{slot.path}#{clip.key}", entry_held(existing[clip.key].meta))
            continue
        if os.path.lexists(slot.path) and rule is Overwrite.NEVER:
            slot.frozen = True
            for clip in slot.clips:
                outcomes[clip.index] = _failed(clip, f"{slot.path}#{clip.key}",
                                               f"{slot.path} exists and lacks clips; not overwritten (-n)")
            continue
        if stale:
            stale_slots.append((slot, stale))
        elif os.path.lexists(slot.path) and rule is not Overwrite.ALWAYS:
            missing = len(slot.clips) - len(slot.reused)
            notes.append(f"{slot.path} is damaged ({damaged}); writing it again" if damaged else
                         f"{slot.path}: {missing} of its {len(slot.clips)} clips missing or damaged; writing it again")
    if stale_slots:
        question = _replace_question(len(stale_slots), out_dir, f"{os.path.basename(stale_slots[0][0].path)}#"
                                                                f"{stale_slots[0][1]}")
        if not may_replace(rule, question, interactive=interactive, **({"ask": ask} if ask else {})):
            for slot, why in stale_slots:
                slot.frozen = True
                for clip in slot.clips:
                    outcomes[clip.index] = _failed(clip, f"{slot.path}#{clip.key}",
                                                   f"{slot.path} exists ({why}); pass -y to encode it again")
    for slot in slots:
        if slot.frozen:
            continue
        remove_leftovers(slot.path)
        slot.new_only = rule is not Overwrite.ALWAYS and not os.path.lexists(slot.path)
        os.makedirs(staging, exist_ok=True)
        for clip in slot.clips:
            if clip.index in slot.reused:
                continue
            base = shards.staged_base(out_dir, clip.key)
            for suffix in (shards.META, shards.LATENTS):
                remove_leftovers(base + suffix)
            slot.pending.add(clip.index)
            tasks.append(Task(clip, base, f"{slot.path}#{clip.key}"))
    extra = sorted(p for p in os.listdir(out_dir) if p.startswith("shard-") and p.endswith(".tar")
                   and p not in {os.path.basename(s.path) for s in slots})
    if extra:
        notes.append(f"{os.path.join(out_dir, extra[0])}" + (f" and {len(extra) - 1} more" if len(extra) > 1 else "")
                     + f" are not shards of this corpus ({len(slots)} shards); left as they are")
    return Plan(sorted(tasks, key=lambda t: t.clip.index), outcomes, notes, slots)
