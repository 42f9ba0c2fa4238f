"""The package's logger: library calls report progress here, never on standard output.

Every stage takes a ``log`` callback for its progress lines; its default, :func:`log_info`, hands
them to ``logging.getLogger("clca_deploy")``, so a Python program sees nothing unless it configures
logging, and the command line (which passes its own callback) decides what reaches the terminal.
"""

from __future__ import annotations

import logging

LOGGER_NAME = "clca_deploy"
logger = logging.getLogger(LOGGER_NAME)


def log_info(line: str) -> None:
    """A progress line of a library call, at INFO level."""
    logger.info(line)
