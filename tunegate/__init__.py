"""tunegate: evaluation-gated model releases, from fine-tune to served endpoint.

The packages, from the bottom layer up (``tests/test_layers.py`` holds the order):

- ``tunegate.core``: the kernel every stage stands on (params, errors, artifacts, the
  prompt, PII scrubbing, calibration, text metrics, the task kind, the model card).
- ``tunegate.training`` (prepare, base, train) and ``tunegate.serving`` (registry,
  packaging, the request log, the service): the kernel alone below them.
- ``tunegate.evaluation`` (evaluate, gate) and ``tunegate.monitoring`` (drift,
  retraining): they also read packaged releases and the request log.
- ``tunegate.tuning``: the recipe search, over training and evaluation.
- ``tunegate.cli``: the command line, on top of everything.
"""

__version__ = "0.1.0"
