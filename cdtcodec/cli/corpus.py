"""`cdtcodec encode` of a corpus (see cdtcodec/corpus): its progress bar, one line per failed clip, a summary
line, and a non-zero exit when any clip failed."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from cdtcodec.cli.common import FramesPerSecond, device_named, err, fail, memory, option_names, precision_for
from cdtcodec.overwrite import policy

if TYPE_CHECKING:
    from cdtcodec.cli.encode import EncodeOptions


def corpus_reason(o: EncodeOptions) -> str:
    """Why these arguments are a corpus ('' when they are one encode): the first that makes them one."""
    inputs, output = o.inputs, o.output
    if len(inputs) > 1:
        return "several inputs"
    if inputs[0].startswith("@"):
        return f"the manifest {inputs[0]}"
    if inputs[0] != "-" and os.path.isdir(inputs[0]):
        return f"the folder {inputs[0]}"
    if output.endswith(("/", os.sep)):
        return "a folder output"
    return "--latents" if o.latents else "--ray" if o.ray is not None else ""


class CorpusBar:
    """The corpus's one progress bar (files and frames, rate, ETA over the estimated frames in all), and its
    lines printed above it: a cdtcodec.corpus.Listener."""

    def __init__(self, enabled: bool, quiet: bool):
        self.enabled, self.quiet = enabled, quiet
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                            TextColumn("{task.fields[files]}"), TextColumn("{task.fields[frames]}"),
                            FramesPerSecond(), TimeRemainingColumn(), console=err, transient=False)
        self.task = self.bar.add_task("encode", total=None, files="", frames="")

    def progress(self, tally) -> None:
        if not self.enabled:
            return
        if not self.bar.live.is_started:
            self.bar.start()
        expected = tally.frames_expected
        skipped = f", {tally.skipped} complete" if tally.skipped else ""
        failed = f", {tally.failed + tally.refused} failed" if tally.failed + tally.refused else ""
        self.bar.update(self.task, completed=tally.frames, total=expected,
                        files=f"{tally.done}/{tally.files} files{skipped}{failed}",
                        frames=f"{tally.frames}/{'~' if expected and tally.done < tally.files else ''}"
                               f"{expected if expected is not None else '?'} frames")

    def say(self, line: str) -> None:
        if not self.quiet:
            err.print(line, markup=False, highlight=False, soft_wrap=True)

    def status(self, text: str) -> None:
        if self.enabled:
            if not self.bar.live.is_started:
                self.bar.start()
            self.bar.update(self.task, description=f"encode ({escape(text)})" if text else "encode")  # markup

    def stop(self, erase: bool) -> None:
        if self.bar.live.is_started:
            self.bar.live.transient = erase
            self.bar.stop()


def encode_corpus(o: EncodeOptions) -> None:
    """`cdtcodec encode` of a corpus: one line per failed clip, a summary line, and a non-zero exit when any clip
    failed."""
    from cdtcodec.corpus import Settings
    from cdtcodec.corpus import encode_corpus as run

    reason = corpus_reason(o)
    for option, value in (("--target-kbps", o.target_kbps), ("--target-bpp", o.target_bpp)):
        # Rate control gives each file its own step, which a rerun could not check a finished clip against
        # (the plan compares each .cdt's step with the corpus's); a corpus is coded at one step throughout.
        if value is not None:
            raise ValueError(f"{option}: rate control encodes one file; a corpus ({reason}) is encoded at one "
                             "--quality or --qstep for all its clips")
    if "-" in o.inputs:
        raise ValueError("-: standard input cannot be part of a corpus (" + reason + ")")
    output = o.output
    if output == "-" or not (output.endswith(("/", os.sep)) or os.path.isdir(output)):
        if reason.startswith("the folder"):
            raise ValueError(f"{o.inputs[0]}: is a directory; to encode the videos in it, give a folder output "
                             "(-o DIR/)")
        raise ValueError(f"-o {output}: a corpus ({reason}) is written into a folder; end the output with / "
                         f"(-o {'DIR' if output == '-' else output}/)")
    rule = policy(o.yes, o.no)
    settings = Settings(model=o.model, quality=o.quality, step=o.qstep, seed=o.seed, steps=o.sampling_steps,
                        entropy=o.entropy, start_s=o.start, max_frames=o.max_frames, audio=not o.no_audio,
                        device=device_named(o.device, here=o.ray is None), max_memory=memory(o.max_memory),
                        threads=o.threads, precision=precision_for(o.precision, None),
                        latents=o.latent_dtype if o.latents else None,
                        option_names=tuple(option_names("encode").items()))
    bar = CorpusBar(not (o.quiet or o.as_json), o.quiet)
    try:
        result = run(o.inputs, output, settings, jobs=o.jobs, ray=o.ray, rule=rule, shard_size=o.shard_size,
                     summary=o.summary, listener=bar)
    except BaseException:
        bar.stop(erase=True)
        raise
    bar.stop(erase=False)
    t = result.totals
    if result.interrupted is not None:
        e = result.interrupted
        fail(f"interrupted by {e.name}; {t.encoded} clip(s) encoded in this run, {t.skipped} were complete before, "
             f"{t.interrupted} not written (run the same command again to finish them); summary {result.summary}",
             e.exit_code)
    failed = result.failed
    if o.as_json:
        typer.echo(json.dumps({"command": "encode", "output": result.out_dir, "summary": result.summary,
                               **t.as_dict(), "model_loads": len(result.load_seconds),
                               "model_load_seconds": sum(result.load_seconds),
                               "failed_inputs": [x.input for x in failed]}))
    elif not o.quiet:
        err.print(f"encode: {t.inputs} inputs -> {output}: {t.encoded} encoded, {t.skipped} already "
                  f"complete, {t.failed} failed; {t.frames} frames, {t.bytes:,} bytes, {t.bpp:.4f} bpp, "
                  f"{t.seconds:.1f} s ({t.fps_processed:.2f} frames/s); summary {result.summary}",
                  highlight=False, markup=False, soft_wrap=True)
    if failed:
        names = ", ".join(result.shown[x.index] for x in failed[:3])
        names += f" and {len(failed) - 3} more" if len(failed) > 3 else ""
        fail(f"{len(failed)} of {t.inputs} inputs failed ({names}); see {result.summary}")
