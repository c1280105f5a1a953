"""`cdtcodec clean`: cdtcodec's temporaries, listed, and those of processes that are gone removed."""

from __future__ import annotations

from typing import Optional

import typer

from cdtcodec.cli.common import friendly_errors
from cdtcodec.cli.options import command


@command()
@friendly_errors
def clean(
    folders: Optional[list[str]] = typer.Argument(None, metavar="FOLDER", help="Where to look (default: the "
                                                  "current folder and the system's temporary folder)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list them; remove nothing."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Look in subfolders too."),
):
    """List cdtcodec's temporaries and remove those of processes that are gone (a running one's are kept).

    Temporaries: .NAME.cdtcodec-PID-*.part files beside outputs, cdtcodec-PID-* folders in the temporary folder."""
    from cdtcodec.temporaries import command as run

    raise typer.Exit(run(folders, dry_run=dry_run, recursive=recursive))
