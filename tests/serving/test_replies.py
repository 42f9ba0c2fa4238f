"""What a failed request tells its client: one line, the right status, nothing of the server's insides."""

from __future__ import annotations

import types

from clca_deploy.serving.replies import MAX_MESSAGE_CHARS, client_message, triton_error


def test_client_message_is_one_line_without_paths_or_addresses():
    message = (
        "ValueError: cannot reshape\n  File \"/tmp/clca-serve-1-abc/repository/clca_preprocess/1/model.py\", line 42\n"
        "object at 0x7f8fd465a050 in /usr/lib/python3.11/site-packages/numpy/core/fromnumeric.py"
    )
    text = client_message(message)
    assert "\n" not in text and "/tmp" not in text and "/usr" not in text and "0x7f8fd465a050" not in text
    assert text.startswith("ValueError: cannot reshape")
    # What a request error legitimately says survives.
    kept = "cannot read image <request image 3>: not a recognised image format (image/png expected)"
    assert client_message(kept) == kept
    assert len(client_message("x" * 10_000)) == MAX_MESSAGE_CHARS


def _pb_utils(with_codes: bool):
    class TritonError:
        def __init__(self, message, code=None):
            self.message, self.code = message, code

    if with_codes:
        TritonError.INVALID_ARG, TritonError.INTERNAL = "INVALID_ARG", "INTERNAL"
    return types.SimpleNamespace(TritonError=TritonError)


def test_triton_error_tells_whose_fault_it_was_where_the_backend_can():
    pb_utils = _pb_utils(with_codes=True)
    assert triton_error(pb_utils, "bad image", client_fault=True).code == "INVALID_ARG"
    assert triton_error(pb_utils, "runtime broke", client_fault=False).code == "INTERNAL"
    old = triton_error(_pb_utils(with_codes=False), "bad\nimage at /srv/models/x.py", client_fault=True)
    assert old.code is None and old.message == "bad image at <path>"
