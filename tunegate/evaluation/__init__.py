"""The evaluate and gate stages: every suite answered by the candidate, its baseline and
the references; the release gate's checks, statistics and report. Imports the kernel,
``tunegate.training`` (examples, labels) and ``tunegate.serving`` (packaged releases)."""
