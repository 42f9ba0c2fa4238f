"""Serving on NVIDIA Triton Inference Server: model repositories (`triton-repo`) and a local server (`serve`)."""

from clca_deploy.serving.repository import TritonRepository, write_triton_repository
from clca_deploy.serving.server import RunningServer, ServeConfig, running_server, serve
from clca_deploy.serving.triton_config import TritonRepoConfig
from clca_deploy.serving.watch import ServerStopped

__all__ = [
    "RunningServer",
    "ServeConfig",
    "ServerStopped",
    "TritonRepoConfig",
    "TritonRepository",
    "running_server",
    "serve",
    "write_triton_repository",
]
