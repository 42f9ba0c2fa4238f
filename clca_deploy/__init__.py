"""clca-deploy: deployment pipeline for CLCA token-reduction Vision Transformers."""

__version__ = "0.1.0"
