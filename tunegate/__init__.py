"""tunegate: evaluation-gated model releases, from fine-tune to served endpoint."""

__version__ = "0.1.0"
