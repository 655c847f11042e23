"""The kernel: params, errors, artifacts, the prompt, PII scrubbing, calibration, text
metrics, the task kind and the model card. Imports no other tunegate package."""
