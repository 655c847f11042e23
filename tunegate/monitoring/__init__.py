"""Drift monitoring (Evidently) of the request log against a release's reference, and the
retraining it calls for. Imports the kernel and ``tunegate.serving`` (the request log)."""
