"""``clca-deploy demo``: the whole pipeline on a CPU, with a model it trains itself."""

from clca_deploy.demo.pipeline import DemoConfig, DemoResult, run_demo

__all__ = ["DemoConfig", "DemoResult", "run_demo"]
