"""Releases: the registry (GTO), packaging (BentoML model store), the request log and the
service (BentoML + vLLM), with staged rollout and the canary judge. Imports the kernel only."""
