"""``cache``: where blazeconv keeps converted weights and ONNX exports, what is there, and emptying it."""

from __future__ import annotations

import click

from .base import cli, say


@cli.group(invoke_without_command=True)
@click.pass_context
def cache(ctx: click.Context) -> None:
    """Show the cache folder: where it is, the entries in it and their size.

    The shipped models' ONNX networks come with the package; blazeconv converts a shipped model for the torch
    backends, and exports any other model to ONNX for the ONNX backends, once, on first use (extra convert),
    into $BLAZECONV_CACHE, else $XDG_CACHE_HOME/blazeconv, else ~/.cache/blazeconv. Entries are checked against
    the size and SHA-256 recorded when they were written, and rebuilt when damaged; a cache that cannot be
    written is replaced by a temporary folder for the run.

    \b
    Examples:
      blazeconv cache
      blazeconv cache clear
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..resources import cache_location
    from ..sources import cache_entries

    folder, default = cache_location()
    entries = [p for p in cache_entries() if not p.name.endswith(".sha256")]
    total = sum(p.stat().st_size for p in cache_entries())
    click.echo(f"{folder}{'' if folder.is_dir() else ' (not created yet)'}"
               f"{'' if default else ' (from BLAZECONV_CACHE)'}")
    for path in entries:
        click.echo(f"  {path.name}  {path.stat().st_size / 2**20:.1f} MiB")
    click.echo(f"{len(entries)} {'entry' if len(entries) == 1 else 'entries'}, {total / 2**20:.1f} MiB")


@cache.command()
def clear() -> None:
    """Delete blazeconv's entries from the cache folder (other files in it are left alone)."""
    from ..resources import cache_location
    from ..sources import clear_cache

    files, size = clear_cache()
    say(f"removed {files} file(s), {size / 2**20:.1f} MiB, from {cache_location()[0]}")
