"""Tests of clca_deploy.system: GPU identity, Jetson facts, `clca-deploy doctor`."""
