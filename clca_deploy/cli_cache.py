"""`clca-deploy cache`: where the cache folder is, what it holds, and trimming it; cli.py registers it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer

from clca_deploy.cli_views import say
from clca_deploy.cli_vocabulary import json_option, json_target, show_result
from clca_deploy.errors import ClcaDeployError
from clca_deploy.system.cache_folder import LOCATION_RULE, OTHER, cache_root, scan_cache, trim_cache
from clca_deploy.terminal import printable

FORMAT = "clca_deploy.cache/1"
_SIZE = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[kmgt]i?)?b?", re.I)
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_CHOSEN_BY = {
    "CLCA_DEPLOY_CACHE": "from $CLCA_DEPLOY_CACHE",
    "XDG_CACHE_HOME": "from $XDG_CACHE_HOME; $CLCA_DEPLOY_CACHE is not set",
    "home": "neither $CLCA_DEPLOY_CACHE nor $XDG_CACHE_HOME is set",
}


def parse_size(text: str) -> int:
    """``"600M"`` -> 600000000 bytes: k, M, G, T are powers of 1000, Ki, Mi, Gi, Ti of 1024; a trailing B is optional."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise typer.BadParameter(f"expected a size such as 0, 500M, 2G or 1.5GiB, got {text!r}")
    return int(float(match["number"]) * _UNITS[(match["unit"] or "").lower()])


def format_size(size: int) -> str:
    """Bytes in the largest decimal unit that keeps a leading digit: ``612.3 MB``."""
    value, unit = float(size), "B"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            break
        value /= 1000
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


def _kinds() -> dict[str, re.Pattern]:
    """{subfolder: entry-name pattern} of every cache this tool keeps; each owner defines its own."""
    from clca_deploy.calibration.cache import CACHE_KIND, ENTRY_NAME

    return {CACHE_KIND: ENTRY_NAME}


def cache(
    trim: Optional[str] = typer.Option(
        None, "--trim", metavar="SIZE",
        help="Remove the least recently used entries until the cache's entries take at most SIZE (500M, 2G, 1.5GiB).",
    ),
    clear: bool = typer.Option(False, "--clear", help="Remove every entry (the same as --trim 0)."),
    as_json: Optional[Path] = json_option("the cache folder's contents (after any --trim or --clear)"),
) -> None:
    if clear and trim is not None:
        raise ClcaDeployError("--clear removes every entry and --trim SIZE some of them; give one.")
    target = 0 if clear else None if trim is None else parse_size(trim)
    json_target(as_json)
    root, kinds = cache_root(), _kinds()
    usage = scan_cache(root, kinds)
    trimmed = None
    if target is not None and usage.exists:
        trimmed = trim_cache(usage, target)
        usage = scan_cache(root, kinds)
    show_result(_as_dict(usage, kinds, trimmed), as_json, lambda: _print_usage(usage, kinds, trimmed), "cache")
    if trimmed is not None and trimmed.failed:
        raise typer.Exit(1)


def _as_dict(usage, kinds: dict, trimmed) -> dict:
    counts = usage.per_kind(tuple(kinds))
    return {
        "format": FORMAT,
        "folder": str(usage.root.path),
        "chosen_by": usage.root.chosen_by,
        "exists": usage.exists,
        "kinds": {kind: {"entries": number, "bytes": size} for kind, (number, size) in counts.items() if kind != OTHER},
        "other": {"entries": counts[OTHER][0], "bytes": counts[OTHER][1]},
        "total_bytes": usage.total_bytes,
        "removed": [] if trimmed is None else [
            {"kind": entry.kind, "path": str(entry.path), "bytes": entry.size} for entry in trimmed.removed
        ],
        "not_removed": [] if trimmed is None else [
            {"path": str(entry.path), "reason": reason} for entry, reason in trimmed.failed
        ],
    }


def _print_usage(usage, kinds: dict, trimmed) -> None:
    if trimmed is not None:
        for entry, reason in trimmed.failed:
            typer.echo(f"warning: could not remove {printable(entry.path)} ({reason})", err=True)
        freed = sum(entry.size for entry in trimmed.removed)
        say(f"removed      {_entries(len(trimmed.removed))} ({format_size(freed)}), least recently used first"
            + (f", and {len(trimmed.temporaries)} half-written files of killed runs" if trimmed.temporaries else ""))
    say(f"cache folder {usage.root.path}  ({_CHOSEN_BY[usage.root.chosen_by]})")
    if not usage.exists:
        say("             empty: the folder does not exist yet")
        return
    for kind, (number, size) in usage.per_kind(tuple(kinds)).items():
        note = "  (not this tool's entries: left alone)" if kind == OTHER and number else ""
        say(f"{kind:<12} {_entries(number):>13} {format_size(size):>9}{note}")
    say(f"{'total':<12} {'':>13} {format_size(usage.total_bytes):>9}")


def _entries(number: int) -> str:
    return f"{number} entry" if number == 1 else f"{number} entries"


# The help text states the location rule from the one place that applies it.
cache.__doc__ = f"""Show the cache folder ({LOCATION_RULE}), its size per kind, and trim it.

    Its entries are the calibration sets of `calibrate` (`--no-cache` skips them): 256 images at 448 px take about 0.6 GB. Only the files this tool writes there are entries, counted and removed; anything else is listed as "other" and left alone.
    """
