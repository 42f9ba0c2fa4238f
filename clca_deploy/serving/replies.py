"""What the Triton Python models tell a client when a request fails: one line, nothing of the server's insides.

Copied beside each Python model's ``model.py`` (see ``repository``), so it imports the standard library only.
"""

from __future__ import annotations

import re

# Server paths (the repository, the Python of the server) and memory addresses tell a client how the
# server is laid out; a request error never needs them.
_PATH = re.compile(r"(?<![\w.<])(?:/[\w.@+-]+){2,}/?")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")
MAX_MESSAGE_CHARS = 400


def client_message(message: object) -> str:
    """``message`` as one line without server paths or memory addresses, at most MAX_MESSAGE_CHARS long."""
    text = " ".join(str(message).split())
    text = _ADDRESS.sub("0x...", _PATH.sub("<path>", text))
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def triton_error(pb_utils, message: object, client_fault: bool):
    """A ``pb_utils.TritonError`` whose status tells the client whose fault it was: INVALID_ARG (HTTP 400,
    gRPC INVALID_ARGUMENT) for a bad request, INTERNAL (HTTP 500) for the server's own failure.

    Python backends before the error codes (Triton 23.x and older) take the message alone; their errors
    reach clients as HTTP 500 whatever the cause.
    """
    code = getattr(pb_utils.TritonError, "INVALID_ARG" if client_fault else "INTERNAL", None)
    text = client_message(message)
    return pb_utils.TritonError(text) if code is None else pb_utils.TritonError(text, code)


def log_error(pb_utils, message: object) -> None:
    """Write ``message`` to the server's log (where the operator looks), on backends that have a logger."""
    logger = getattr(pb_utils, "Logger", None)
    if logger is not None:
        logger.log_error(" ".join(str(message).split()))
