"""Releases: the registry (GTO), packaging (BentoML model store), the service (BentoML + vLLM)."""
