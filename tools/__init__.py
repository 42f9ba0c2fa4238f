"""Maintenance scripts of this repository, run by hand (``python tools/<script>.py``).

Not part of the ``clca_deploy`` package: pyproject.toml packages ``clca_deploy*`` only, so nothing here
reaches the wheel. A package only so that the tests can import the scripts' code (``tests/tools/``).
"""
