"""Serve a model locally and check that Triton answers every image as the direct runtime does."""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from clca_deploy.serving.client import answers, image_request
from clca_deploy.serving.compare import AnswerAgreement, compare_answers
from clca_deploy.serving.server import ServeConfig, free_port, running_server


@dataclass(frozen=True)
class ServingCheck:
    """``images`` sent through the server with ``clients`` requests in flight, and how their answers agree with the runtime's."""

    images: int
    clients: int
    agreement: AnswerAgreement  # of the answered images: classes and scores counted apart
    errors: tuple[str, ...]
    seconds: float  # from the first request sent to the last answer parsed

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "agreement": self.agreement.to_dict(), "images_per_second": self.images_per_second}


@dataclass(frozen=True)
class DirectAnswers:
    """`clca-deploy predict`'s top classes (``Prediction.top``) by image path, and the model's precision."""

    top: dict[Path, tuple]
    precision: str  # from the model's metadata (ONNX) or sidecar (engine)


def direct_answers(model_path: str | Path, images: Sequence[Path], top_k: int = 5) -> DirectAnswers:
    """`clca-deploy predict`'s answers for each readable image of ``images``."""
    from clca_deploy.runtime import open_backend, predict_images

    with open_backend(model_path) as backend:
        run = predict_images(backend, images, top_k=top_k)
        return DirectAnswers({Path(p.path): p.top for p in run.predictions}, backend.description.precision)


def check_served(model_path: str | Path, images: Sequence[Path], clients: int = 4, top_k: int = 5) -> ServingCheck:
    """Answers of `clca-deploy predict` for ``images``, then the same images through `serve`, compared."""
    import tritonclient.http as triton_http

    direct = direct_answers(model_path, images, top_k)
    readable = [Path(path) for path in images if Path(path) in direct.top]
    served, errors = {}, []
    # PyTriton echoes the server's console ("Signal (2) received." when it stops) to our stdout;
    # its log proper goes to a file, and failures come back as exceptions.
    with contextlib.redirect_stdout(io.StringIO()), running_server(model_path, ServeConfig(port=free_port(), top_k=top_k)) as server:
        with triton_http.InferenceServerClient(server.http_url, concurrency=clients) as client:
            started = time.perf_counter()
            # The HTTP client's async calls share its pool of `clients` connections.
            pending = [(path, client.async_infer(server.model, image_request([path.read_bytes()]))) for path in readable]
            for path, request in pending:
                try:
                    served[str(path)] = answers(request.get_result())[0]
                except Exception as exc:  # noqa: BLE001 - every failed request is counted and named
                    errors.append(f"{path.name}: {exc}")
            seconds = time.perf_counter() - started
    agreement = compare_answers(served, {str(path): top for path, top in direct.top.items()}, direct.precision)
    return ServingCheck(len(readable), clients, agreement, tuple(errors), seconds)
