"""Keep libraries from creating a home folder that does not exist.

onnxruntime writes a device id and a telemetry database to ``$XDG_CACHE_HOME`` (default
``~/.cache``)/Microsoft/DeveloperTools/.onnxruntime when it is imported, even after
``disable_telemetry_events()``, and matplotlib writes its config and font cache under ``~/.config`` and
``~/.cache``: each creates ``$HOME`` when it is missing (a container's nonexistent home, a service
account). Where the home folder does not exist, the CLI points both XDG folders at a private temporary
folder that goes away when the command ends; where it exists, nothing changes.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile


def keep_missing_home_absent(environ: dict[str, str] | None = None) -> str | None:
    """When ``$HOME`` is not an existing folder, set the unset XDG cache and config folders to a private
    temporary folder (removed at exit) and return it; else change nothing and return None."""
    environ = os.environ if environ is None else environ
    home = environ.get("HOME") or os.path.expanduser("~")
    if os.path.isdir(home) or ("XDG_CACHE_HOME" in environ and "XDG_CONFIG_HOME" in environ):
        return None
    private = tempfile.mkdtemp(prefix="clca-deploy-home-")  # 0700: this user's only
    atexit.register(shutil.rmtree, private, True)
    environ.setdefault("XDG_CACHE_HOME", os.path.join(private, "cache"))
    environ.setdefault("XDG_CONFIG_HOME", os.path.join(private, "config"))
    return private
