"""tune: find the most accurate deployment (keep rate x precision x runtime) that meets a latency or energy budget."""

from clca_deploy.pipeline.tune.config import TuneConfig
from clca_deploy.pipeline.tune.model import Budget, Candidate, Measurement
from clca_deploy.pipeline.tune.run import TuneResult, run_tune

__all__ = ["Budget", "Candidate", "Measurement", "TuneConfig", "TuneResult", "run_tune"]
