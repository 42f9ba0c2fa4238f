"""What a newcomer copies or calls first carries a docstring: every backend and its options, every power
sampler, and every public function of the metadata reader, the runtime protocol and registry, and sweep."""

from __future__ import annotations

import importlib
import inspect

import pytest

from clca_deploy.bench.power.meter import ThreadedPowerSampler
from clca_deploy.runtime.registry import BUILT_IN

PUBLIC_MODULES = ("clca_deploy.metadata", "clca_deploy.runtime.base", "clca_deploy.runtime.registry",
                  "clca_deploy.pipeline.sweep", "clca_deploy.bench.power.picker")
SAMPLER_MODULES = ("nvml", "tegrastats", "jtop", "rails", "meter")


@pytest.mark.parametrize("spec", BUILT_IN, ids=lambda spec: spec.name)
def test_each_backend_and_its_options_say_what_they_are(spec):
    assert inspect.getdoc(spec.backend) and spec.backend.__doc__, spec.name
    assert spec.options.__doc__ and not spec.options.__doc__.startswith(spec.options.__name__ + "("), spec.name


def test_each_power_sampler_says_what_it_reads():
    samplers = []
    for name in SAMPLER_MODULES:
        module = importlib.import_module(f"clca_deploy.bench.power.{name}")
        samplers += [cls for _, cls in inspect.getmembers(module, inspect.isclass)
                     if issubclass(cls, ThreadedPowerSampler) and cls.__module__ == module.__name__]
    assert len(samplers) >= 5
    assert [cls.__name__ for cls in samplers if not cls.__doc__] == []


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_functions_have_docstrings(name):
    module = importlib.import_module(name)
    public = [obj for attr, obj in vars(module).items()
              if not attr.startswith("_") and inspect.isfunction(obj) and obj.__module__ == name]
    assert public
    assert [function.__name__ for function in public if not function.__doc__] == []
