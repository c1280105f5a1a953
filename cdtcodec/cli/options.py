"""How the commands declare their options: old spellings kept as deprecated aliases, and a command whose
options are the fields of one dataclass.

An option renamed so that each name means one thing in every command keeps its old spelling as a hidden
alias: RENAMED lists them per command, and Command rewrites each before click parses the arguments, with one
`note:` line on stderr. The aliases are not parameters, so `--help` shows only the new names.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Iterable

from typer.core import TyperCommand

from cdtcodec.cli.common import app, note

#: command -> {old spelling: new spelling}. Each name now has one meaning in all commands: --frames a decode's
#: range A:B, --max-frames the count taken from each input, --clip-frames a training clip's length, --steps
#: training steps, --sampling-steps DDIM steps, --qstep the quantizer step, --preset the output encoder's
#: speed preset, --model-preset a model topology, -o/--output what a command writes.
RENAMED: dict[str, dict[str, str]] = {
    "encode": {"--step": "--qstep", "--steps": "--sampling-steps", "--frames": "--max-frames"},
    "convert": {"--preset": "--model-preset"},
    "train": {"--out": "--output", "--frames": "--clip-frames"},
    "bench": {"--out": "--output", "--frames": "--max-frames"},
}


def rename(args: Iterable[str], renamed: dict[str, str], valued: set[str],
           say: Callable[[str], None] = note) -> list[str]:
    """`args` with each old spelling in `renamed` (`--old` or `--old=VALUE`) replaced by its new one, and one
    line said per old spelling used. Option values are skipped, never renamed: those of the options in
    `valued` (the option strings that take a value), and everything after `--`."""
    args, out, told = list(args), [], set()
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if token == "--":
            out += [token, *args[i:]]
            break
        if token.startswith("--"):
            name, eq, value = token.partition("=")
            if name in renamed:
                if name not in told:
                    say(f"{name} is deprecated; use {renamed[name]}")
                    told.add(name)
                name = renamed[name]
                token = name + eq + value
            takes_next = not eq and name in valued
        else:  # -x, or a cluster of short options: the first one that takes a value takes the rest, or the next
            cluster = token[1:] if token.startswith("-") else ""
            at = next((k for k, c in enumerate(cluster) if f"-{c}" in valued), None)
            takes_next = at is not None and at == len(cluster) - 1
        out.append(token)
        if takes_next and i < len(args):
            out.append(args[i])
            i += 1
    return out


class Command(TyperCommand):
    """A typer command that accepts the old spellings RENAMED lists for it."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        renamed = RENAMED.get(self.name or "", {})
        if renamed:
            # options (not arguments) that take a value; typer brings its own click, so no click import here
            valued = {name for p in self.get_params(ctx) if p.param_type_name == "option" and not p.is_flag
                      and not p.count for name in (*p.opts, *p.secondary_opts)}
            args = rename(args, renamed, valued)
        return super().parse_args(ctx, args)


def command(**kwargs):
    """app.command, with the deprecated spellings of RENAMED."""
    return app.command(cls=Command, **kwargs)


def options_command(options: type) -> Callable:
    """Decorator: a typer command whose parameters are the fields of the dataclass `options` (each field's
    default is its typer.Option or typer.Argument), which calls the decorated function with them as one
    `options` object. The option list lives in the dataclass alone."""
    hints = typing.get_type_hints(options)
    parameters = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                    annotation=hints[f.name]) for f in dataclasses.fields(options)]

    def decorate(body: Callable) -> Callable:
        def run(**values):
            return body(options(**values))

        run.__name__ = run.__qualname__ = body.__name__
        run.__doc__, run.__module__ = body.__doc__, body.__module__
        run.__signature__ = inspect.Signature(parameters)
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run

    return decorate
