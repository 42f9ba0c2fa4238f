"""Orchestrators above the stages: build-trt's calibrate-or-convert-then-build."""
