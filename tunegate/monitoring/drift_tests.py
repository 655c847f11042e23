"""The drift tests whose false-alarm rate is stated, registered with Evidently.

Each test compares a window with a reference that is itself a sample, and is valid when
the two are exchangeable (in-distribution traffic against held-out rows):

- ``two_sample_chisquare``: predicted labels. A 2 x K contingency table (reference vs
  window, one column per label seen), chi-square statistic, p-value by permutation
  (scipy's ``chi2_contingency`` with ``PermutationMethod``): the reference counts are a
  sample, not the truth, and many labels are rare, where the asymptotic chi-square is off.
- ``NullCalibratedModelDrift``: embeddings. Evidently's domain classifier (SGD logistic
  regression, trained on a random half of reference + window) scores the other half;
  under the null those scores are independent of which side a row came from, so the
  held-out ROC AUC follows the Mann-Whitney null at the actual test sizes:
  ``p = 1 - Phi((AUC - 0.5) / sqrt((n1 + n2 + 1) / (12 n1 n2)))``. The threshold is the
  AUC at which p equals the signal's level (not Evidently's fixed 0.55).

Descriptors and confidences use the K-S test (Evidently's ``ks``). Every signal of a
report is tested at ``alpha / n`` (Bonferroni over the signals judged in it).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
from evidently.legacy.core import ColumnType
from evidently.legacy.metrics.data_drift.embedding_drift_methods import DriftMethod
from scipy.stats import PermutationMethod, chi2_contingency, norm
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

PERMUTATIONS = 1999
"""Resamples of the label test: the smallest p-value it can give is 1 / 2000."""
SPLIT_SEED = 42
"""The classifier's train/test split (Evidently's own choice, kept)."""
MIN_CLASSIFIER_SIDE = 10
"""Rows of each side the embedding classifier's test half needs (the normal approximation
of the Mann-Whitney null is poor below that)."""


def label_table(reference: list[Any], current: list[Any]) -> np.ndarray:
    """Counts per label (columns: labels seen on either side), reference row first."""
    keys = sorted({str(x) for x in [*reference, *current]})
    ref, cur = pd.Series(reference).astype(str), pd.Series(current).astype(str)
    return np.array([[int((ref == k).sum()) for k in keys], [int((cur == k).sum()) for k in keys]])


def two_sample_chisquare(
    reference: list[Any], current: list[Any], seed: int = 0, resamples: int = PERMUTATIONS
) -> float:
    """p-value of 'both sides draw labels from one distribution' (permutation null)."""
    table = label_table(reference, current)
    if table.shape[1] < 2:
        return 1.0  # one label on both sides: nothing to tell apart
    result = chi2_contingency(
        table,
        correction=False,
        method=PermutationMethod(n_resamples=resamples, rng=np.random.default_rng(seed)),
    )
    return float(result.pvalue)


def _chisquare_stattest(
    reference_data: pd.Series, current_data: pd.Series, feature_type: ColumnType, threshold: float
) -> tuple[float, bool]:
    p = two_sample_chisquare(list(reference_data.dropna()), list(current_data.dropna()))
    return p, p < threshold


TWO_SAMPLE_CHISQUARE = StatTest(
    name="two_sample_chisquare",
    display_name="two-sample chi-square (permutation) p_value",
    allowed_feature_types=[ColumnType.Categorical],
)
register_stattest(TWO_SAMPLE_CHISQUARE, default_impl=_chisquare_stattest)


def held_out_sizes(n_reference: int, n_current: int) -> tuple[int, int]:
    """How many reference and window rows land in the classifier's test half."""
    target = np.array([1] * n_reference + [0] * n_current)
    _, y_test = train_test_split(target, test_size=0.5, random_state=SPLIT_SEED, shuffle=True)
    return int(y_test.sum()), int(len(y_test) - y_test.sum())


def auc_null_sd(n1: int, n2: int) -> float:
    """Standard deviation of the ROC AUC of scores unrelated to the labels (Mann-Whitney)."""
    return math.sqrt((n1 + n2 + 1) / (12 * n1 * n2))


def auc_p_value(auc: float, n1: int, n2: int) -> float:
    """One-sided: only a classifier that tells the sides apart (AUC above 0.5) is drift."""
    return float(norm.sf((auc - 0.5) / auc_null_sd(n1, n2)))


def auc_threshold(alpha: float, n1: int, n2: int) -> float:
    """The AUC at which the p-value equals alpha, at these test sizes."""
    return 0.5 + float(norm.isf(alpha)) * auc_null_sd(n1, n2)


def classifier_auc(reference: np.ndarray, current: np.ndarray) -> tuple[float, int, int]:
    """Evidently's domain-classifier recipe: fit on one half, ROC AUC on the other."""
    data = np.vstack([reference, current])
    target = np.array([1] * len(reference) + [0] * len(current))
    x_train, x_test, y_train, y_test = train_test_split(
        data, target, test_size=0.5, random_state=SPLIT_SEED, shuffle=True
    )
    clf = SGDClassifier(loss="log_loss", random_state=SPLIT_SEED).fit(x_train, y_train)
    auc = float(roc_auc_score(y_test, clf.predict_proba(x_test)[:, 1]))
    return auc, int(y_test.sum()), int(len(y_test) - y_test.sum())


class NullCalibratedModelDrift(DriftMethod):
    """Evidently embedding drift method: the classifier's AUC against its null at these sizes."""

    class Config:
        type_alias = "tunegate:drift_method:NullCalibratedModelDrift"

    alpha: float = 0.05

    def __call__(self, current_emb: pd.DataFrame, reference_emb: pd.DataFrame) -> tuple[float, bool, str]:
        auc, n1, n2 = classifier_auc(reference_emb.to_numpy(), current_emb.to_numpy())
        return auc, auc_p_value(auc, n1, n2) < self.alpha, "model"
