"""Names the kernel validates params.yaml against and the stages implement.

``eval.perturbations`` and ``monitor.signals`` are checked against these; the modules that
implement them (tunegate/evaluation/perturb.py, tunegate/monitoring/descriptors.py,
tunegate/monitoring/drift.py)
key their tables by the same names, and a test holds the two equal.
"""

PERTURBATIONS = ("typos", "casing", "no_punctuation", "truncation", "filler")
"""The perturbation suites there are (tunegate/evaluation/perturb.py implements each)."""
DESCRIPTORS = ("length_chars", "word_count", "non_alpha_share", "oov_share", "english_share")
"""The drift monitor's text descriptors (tunegate/monitoring/descriptors.py computes each)."""
MODEL_SIGNALS = ("embedding", "predicted_label", "confidence", "estimated_accuracy", "abstention_rate")
"""The drift monitor's other signals for classification (tunegate/monitoring/drift.py,
tunegate/monitoring/estimate.py, tunegate/monitoring/abstention.py)."""
GENERATION_SIGNALS = ("embedding", "answer_length", "invalid_json", "empty_answer", "null_rate")
"""The drift monitor's other signals for generation (tunegate/monitoring/generation_drift.py);
``null_rate`` is one test per field of the answers' JSON objects."""
LIVE_SIGNALS = {"classification": "live_accuracy", "generation": "live_quality"}
"""The feedback signal of each kind (judged when callers sent enough feedback)."""
