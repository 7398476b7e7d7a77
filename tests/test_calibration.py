"""Calibrators (lmboost.calibration) against numbers worked out by hand on small matrices."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import softmax
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import ParameterGrid
from sklearn.utils.validation import check_is_fitted

import lmboost.calibration.prototypical as prototypical
from lmboost.calibration import (
    CALIBRATORS,
    DEFAULT_METHODS,
    BatchCalibration,
    BatchCalibrationLearned,
    CalibrationError,
    Calibrator,
    ContextualCalibration,
    DomainContextCalibration,
    DomainPremisePMI,
    FeatureCalibrator,
    GenerativeCalibration,
    HiddenCalibration,
    KNNPrompting,
    LinearProbeCalibration,
    NoCalibration,
    PrototypicalCalibration,
    StreamingBatchCalibration,
    domain_context_strings,
    get_calibrator,
    normalise,
)
from lmboost.errors import LmboostError

# Label log-probabilities are not normalised over the labels: each row gets its own offset.
OFFSETS = np.array([[-2.0], [-5.0], [-1.0]])

# Two labels, true labels [0, 0, 1, 1]. Label-1 margin d = s0 - s1 = [-0.5, -0.8, -2.8, -2.4]:
# the raw argmax is always label 1. The batch mean of d is -1.625, and BC predicts label 0 iff
# d > -1.625, i.e. [0, 0, 1, 1].
BIASED_X = np.array([[-1.0, -0.5], [-1.2, -0.4], [-3.0, -0.2], [-2.5, -0.1]])
BIASED_Y = np.array([0, 0, 1, 1])


def rng_scores(n: int, k: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(-3.0, 1.5, size=(n, k))


# --------------------------------------------------------------------------- shared helpers


def test_normalise_by_hand():
    X = np.log([[1.0, 3.0]]) - 7.0  # unnormalised; probabilities 1/4, 3/4
    np.testing.assert_allclose(normalise(X, "prob"), [[0.25, 0.75]])
    np.testing.assert_allclose(normalise(X, "logprob"), np.log([[0.25, 0.75]]))
    with pytest.raises(CalibrationError, match="logprob"):
        normalise(X, "logit")


def test_none_is_log_softmax_and_needs_no_fit():
    X = np.log([[0.2, 0.6], [0.3, 0.1]])  # rows sum to 0.8 and 0.4
    cal = NoCalibration()
    np.testing.assert_allclose(cal.transform(X), np.log([[0.25, 0.75], [0.75, 0.25]]))
    np.testing.assert_allclose(cal.predict_proba(X), [[0.25, 0.75], [0.75, 0.25]])
    assert cal.predict(X).tolist() == [1, 0]
    assert cal.fit() is cal and cal.fit(X) is cal and cal.n_classes_ == 2
    assert cal.get_params() == {}


# --------------------------------------------------------------------------- CC and DC


def test_cc_prior_from_known_content_free_probabilities():
    # Content-free probabilities [0.6, 0.4], [0.8, 0.2], [0.7, 0.3]  ->  p_cf = [0.7, 0.3].
    X_cf = np.log([[0.6, 0.4], [0.8, 0.2], [0.7, 0.3]]) + OFFSETS
    cal = ContextualCalibration().fit(X_cf)
    np.testing.assert_allclose(cal.prior_, [0.7, 0.3])
    # [0.7, 0.3] / p_cf = [1, 1] -> [0.5, 0.5];
    # [0.5, 0.5] / p_cf = [5/7, 5/3] -> (1/7) / (1/7 + 1/3) = 0.3 -> [0.3, 0.7];
    # [0.9, 0.1] / p_cf = [9/7, 1/3] = [27, 7] / 21 -> [27/34, 7/34].
    X = np.log([[0.7, 0.3], [0.5, 0.5], [0.9, 0.1]]) - 3.0
    expected = [[0.5, 0.5], [0.3, 0.7], [27 / 34, 7 / 34]]
    np.testing.assert_allclose(cal.transform(X), expected)
    np.testing.assert_allclose(cal.predict_proba(X), expected)
    assert cal.predict(X[1:]).tolist() == [1, 0]


def test_cc_three_labels():
    cal = ContextualCalibration().fit(np.log([[0.5, 0.25, 0.25]]))
    # [0.5, 0.25, 0.25] / p_cf = [1, 1, 1] -> uniform;
    # [0.2, 0.4, 0.4] / p_cf = [0.4, 1.6, 1.6], sum 3.6 -> [1/9, 4/9, 4/9].
    out = cal.transform(np.log([[0.5, 0.25, 0.25], [0.2, 0.4, 0.4]]))
    np.testing.assert_allclose(out, [[1 / 3, 1 / 3, 1 / 3], [1 / 9, 4 / 9, 4 / 9]])


def test_dc_is_cc_fitted_on_domain_context():
    assert issubclass(DomainContextCalibration, ContextualCalibration)
    assert DomainContextCalibration.needs == "domain_context"
    X_dc = np.log([[0.9, 0.1], [0.5, 0.5]]) - 4.0  # p_dc = [0.7, 0.3]
    cal = DomainContextCalibration().fit(X_dc)
    np.testing.assert_allclose(cal.prior_, [0.7, 0.3])
    np.testing.assert_allclose(cal.transform(np.log([[0.5, 0.5]])), [[0.3, 0.7]])


TEXTS = ["the cat sat", "a dog ran far away", "birds fly"]  # 3, 5, 2 words: mean 3.33 -> 3


def test_domain_context_strings_deterministic_in_vocabulary_average_length():
    out = domain_context_strings(TEXTS, n=20, seed=1)
    assert out == domain_context_strings(TEXTS, n=20, seed=1)
    assert out != domain_context_strings(TEXTS, n=20, seed=2)
    vocabulary = {w for t in TEXTS for w in t.split()}
    assert len(out) == 20
    assert all(len(s.split()) == 3 and set(s.split()) <= vocabulary for s in out)
    assert [len(s.split()) for s in domain_context_strings(TEXTS, n=4, length=7)] == [7] * 4
    assert len(domain_context_strings(["a", "b c"], n=1)[0].split()) == 2  # 1.5 rounds up


def test_domain_context_strings_errors():
    with pytest.raises(CalibrationError, match="at least one word"):
        domain_context_strings(["", "  "])
    with pytest.raises(CalibrationError, match="not a single str"):
        domain_context_strings("the cat sat")
    with pytest.raises(CalibrationError, match="n must be"):
        domain_context_strings(TEXTS, n=0)


# --------------------------------------------------------------------------- PC


def two_clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Label 0 inputs get p(label 1) ~ 0.6, label 1 inputs ~ 0.95: the raw argmax is always 1."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], 40)
    centre = np.where(y[:, None] == 0, [0.0, 0.4], [0.0, 3.0])
    return centre + rng.normal(0.0, 0.1, size=(80, 2)) - 2.0, y


class ReversedGMM(GaussianMixture):
    """A GaussianMixture whose components come out in reverse order after fitting."""

    def fit(self, X, y=None):
        super().fit(X)
        order = np.arange(self.n_components)[::-1]
        for attr in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
            setattr(self, attr, getattr(self, attr)[order])
        return self


def test_pc_recovers_two_separated_clusters():
    X, y = two_clusters()
    assert NoCalibration().predict(X).tolist() == [1] * 80
    cal = PrototypicalCalibration().fit(X)
    assert cal.predict(X).tolist() == y.tolist()
    proba = cal.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # The cluster with the larger mean log p(label 0) is the one matched to label 0.
    assert cal.cluster_to_label_[np.argmax(cal.gmm_.means_[:, 0])] == 0


def test_pc_matching_survives_flipped_component_order(monkeypatch):
    X, y = two_clusters(seed=3)
    plain = PrototypicalCalibration().fit(X)
    monkeypatch.setattr(prototypical, "GaussianMixture", ReversedGMM)
    flipped = PrototypicalCalibration().fit(X)
    np.testing.assert_allclose(flipped.gmm_.means_, plain.gmm_.means_[::-1])
    assert flipped.cluster_to_label_.tolist() == plain.cluster_to_label_[::-1].tolist()
    assert flipped.predict(X).tolist() == y.tolist() == plain.predict(X).tolist()
    np.testing.assert_allclose(flipped.predict_proba(X), plain.predict_proba(X))


def test_pc_three_labels_hungarian():
    # Cluster centres as label probabilities; every centre's top label is 0, so only the
    # matching (maximising the sum of matched mean log-probs) can give labels 1 and 2.
    rng = np.random.default_rng(0)
    centres = np.log([[0.80, 0.10, 0.10], [0.45, 0.45, 0.10], [0.45, 0.10, 0.45]])
    y = np.repeat([0, 1, 2], 30)
    X = centres[y] + rng.normal(0.0, 0.03, size=(90, 3)) - 1.5
    cal = PrototypicalCalibration().fit(X)
    assert cal.predict(X).tolist() == y.tolist()
    assert sorted(cal.cluster_to_label_.tolist()) == [0, 1, 2]


def test_pc_needs_at_least_k_rows():
    with pytest.raises(CalibrationError, match="at least 3 test rows, got 2"):
        PrototypicalCalibration().fit(rng_scores(2, 3))


# --------------------------------------------------------------------------- BC


def test_bc_mean_by_hand_logprob():
    # Probabilities [0.5, 0.5], [0.8, 0.2], [0.4, 0.6]:
    # mean log p = [log(0.5 * 0.8 * 0.4) / 3, log(0.5 * 0.2 * 0.6) / 3] = [log 0.16, log 0.06] / 3.
    X = np.log([[0.5, 0.5], [0.8, 0.2], [0.4, 0.6]]) + OFFSETS
    cal = BatchCalibration().fit(X)
    mean = np.array([np.log(0.16), np.log(0.06)]) / 3
    np.testing.assert_allclose(cal.mean_, mean)
    np.testing.assert_allclose(cal.transform(X)[1], [np.log(0.8) - mean[0], np.log(0.2) - mean[1]])


def test_bc_mean_by_hand_prob_and_clipping():
    X = np.log([[0.5, 0.5], [0.8, 0.2], [0.4, 0.6]]) + OFFSETS
    cal = BatchCalibration(space="prob").fit(X)
    np.testing.assert_allclose(cal.mean_, [1.7 / 3, 1.3 / 3])
    expected = np.array([[-0.2, 0.2], [0.7, -0.7], [-0.5, 0.5]]) / 3
    np.testing.assert_allclose(cal.transform(X), expected, atol=1e-15)
    np.testing.assert_allclose(cal.predict_proba(X), [[0, 1], [1, 0], [0, 1]])
    # One row is its own batch mean: all scores 0 -> the all-zero row becomes uniform.
    single = BatchCalibration(space="prob").fit(X[:1])
    np.testing.assert_allclose(single.predict_proba(X[:1]), [[0.5, 0.5]])


def test_bc_removes_constant_label_bias():
    assert NoCalibration().predict(BIASED_X).tolist() == [1, 1, 1, 1]
    for space in ("logprob", "prob"):
        assert BatchCalibration(space=space).fit_predict(BIASED_X).tolist() == BIASED_Y.tolist()


def test_bc_transform_does_not_change_state():
    cal = BatchCalibration().fit(BIASED_X)
    mean = cal.mean_.copy()
    cal.transform(rng_scores(7, 2))
    np.testing.assert_array_equal(cal.mean_, mean)


# --------------------------------------------------------------------------- streaming BC


def test_streaming_cumulative_equals_offline():
    X = rng_scores(100, 3, seed=1)
    stream = StreamingBatchCalibration()
    for lo, hi in [(0, 1), (1, 8), (8, 38), (38, 50), (50, 100)]:
        stream.partial_fit(X[lo:hi])
    offline = BatchCalibration().fit(X)
    assert stream.n_seen_ == 100
    np.testing.assert_allclose(stream.mean_, offline.mean_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(stream.transform(X), offline.transform(X), rtol=0, atol=1e-12)
    # fit() forgets earlier batches.
    stream.fit(X[:10])
    assert stream.n_seen_ == 10
    np.testing.assert_allclose(stream.mean_, BatchCalibration().fit(X[:10]).mean_)


def test_streaming_first_batches_behave_as_documented():
    X = rng_scores(5, 3, seed=2)
    one = StreamingBatchCalibration().partial_fit(X[:1])
    np.testing.assert_array_equal(one.transform(X[:1]), [[0.0, 0.0, 0.0]])
    assert one.predict(X[:1]).tolist() == [0]
    np.testing.assert_allclose(one.predict_proba(X[:1]), [[1 / 3, 1 / 3, 1 / 3]])
    # With n rows seen, row i gets ((n - 1) / n) * (s_i - mean of the other rows).
    five = StreamingBatchCalibration().partial_fit(X)
    S = normalise(X, "logprob")
    others = (S.sum(axis=0) - S[0]) / 4
    np.testing.assert_allclose(five.transform(X[:1])[0], 0.8 * (S[0] - others))


def test_streaming_momentum():
    X = rng_scores(4, 2, seed=3)
    S = normalise(X, "logprob")
    ema = StreamingBatchCalibration(momentum=0.9).partial_fit(X[:2]).partial_fit(X[2:])
    np.testing.assert_allclose(ema.mean_, 0.9 * S[:2].mean(0) + 0.1 * S[2:].mean(0))
    assert ema.n_seen_ == 4
    # On an i.i.d. stream the moving average approaches the offline mean.
    X = rng_scores(4000, 3, seed=4)
    offline = BatchCalibration().fit(X).mean_
    ema = StreamingBatchCalibration(momentum=0.9).partial_fit(X[:20])
    first_error = np.abs(ema.mean_ - offline).max()
    for lo in range(20, 4000, 20):
        ema.partial_fit(X[lo : lo + 20])
    final_error = np.abs(ema.mean_ - offline).max()
    assert final_error < 0.15 and final_error < first_error
    with pytest.raises(CalibrationError, match="momentum"):
        StreamingBatchCalibration(momentum=1.0).partial_fit(X)


# --------------------------------------------------------------------------- BCL

# Imbalanced labelled set the raw model already gets right (label-0 margins 2, 2, 2, 0.1 and
# label-1 margin -0.1, batch mean 1.2): any |gamma| >= 0.25 flips the 0.1 or the -0.1 example.
UNBIASED_X = np.array([[-1, -3], [-1, -3], [-1, -3], [-1, -1.1], [-1.1, -1]], dtype=float)
UNBIASED_Y = np.array([0, 0, 0, 0, 1])


def test_bcl_picks_zero_when_unbiased():
    cal = BatchCalibrationLearned().fit(UNBIASED_X, UNBIASED_Y)
    assert cal.gamma_ == 0.0
    assert len(cal.gammas_) == len(cal.search_scores_) == 41
    assert cal.search_scores_[cal.gammas_ == 0.0][0] == 1.0
    assert cal.search_scores_[cal.gammas_ == 1.0][0] == 0.8  # plain BC flips the 0.1 example
    assert cal.predict(UNBIASED_X).tolist() == UNBIASED_Y.tolist()
    assert cal.n_labelled_ == 5


def test_bcl_picks_one_when_biased():
    # Correct iff -0.8 + 1.625 gamma > 0 and -2.4 + 1.625 gamma < 0: gamma in (0.49, 1.48);
    # the tie among 0.5, 0.75, 1.0, 1.25 goes to the gamma closest to 1.
    cal = BatchCalibrationLearned().fit(BIASED_X, BIASED_Y)
    assert cal.gamma_ == 1.0
    assert cal.search_scores_[cal.gammas_ == 0.0][0] == 0.5
    assert cal.predict(BIASED_X).tolist() == BIASED_Y.tolist()
    f1 = BatchCalibrationLearned(criterion="macro_f1").fit(BIASED_X, BIASED_Y)
    assert f1.gamma_ == 1.0 and f1.search_scores_.max() == 1.0


def test_bcl_prior_from_unlabelled_and_transform():
    X_u = np.log([[0.5, 0.5], [0.8, 0.2], [0.4, 0.6]]) + OFFSETS
    cal = BatchCalibrationLearned(gammas=[2.0]).fit(BIASED_X, BIASED_Y, X_unlabelled=X_u)
    prior = np.array([np.log(0.16), np.log(0.06)]) / 3
    np.testing.assert_allclose(cal.prior_, prior)
    assert cal.gamma_ == 2.0
    X = np.log([[0.25, 0.75]])
    np.testing.assert_allclose(cal.transform(X), np.log([[0.25, 0.75]]) - 2.0 * prior)


def test_bcl_tie_breaks():
    X = np.zeros((4, 2))  # every gamma gives the same predictions
    y = np.array([0, 1, 0, 1])
    assert BatchCalibrationLearned().fit(X, y).gamma_ == 1.0
    assert BatchCalibrationLearned(gammas=[-2.0, -0.5, 0.5, 2.0]).fit(X, y).gamma_ == 0.5
    assert BatchCalibrationLearned(gammas=[2.0, 0.0]).fit(X, y).gamma_ == 0.0


def test_bcl_input_errors():
    with pytest.raises(CalibrationError, match="needs gold labels"):
        BatchCalibrationLearned().fit(BIASED_X)
    with pytest.raises(CalibrationError, match="one label per row"):
        BatchCalibrationLearned().fit(BIASED_X, [0, 1])
    with pytest.raises(CalibrationError, match="label indices 0..1"):
        BatchCalibrationLearned().fit(BIASED_X, [0, 1, 2, 1])
    with pytest.raises(CalibrationError, match="criterion"):
        BatchCalibrationLearned(criterion="auc").fit(BIASED_X, BIASED_Y)
    with pytest.raises(CalibrationError, match="same label set"):
        BatchCalibrationLearned().fit(BIASED_X, BIASED_Y, X_unlabelled=rng_scores(3, 3))


# --------------------------------------------------------------------------- LinC


def test_linc_on_identical_rows_learns_the_label_frequencies():
    # Every row has p = [0.6, 0.4] and 3 of 4 labels are 0: the cross-entropy over one logit
    # vector z = W p + b is minimised at softmax(z) = [0.75, 0.25]; a tiny reg barely moves it.
    X = np.log([[0.6, 0.4]] * 4) + OFFSETS[[0, 1, 2, 0]]
    cal = LinearProbeCalibration(reg=1e-6).fit(X, [0, 0, 0, 1])
    np.testing.assert_allclose(cal.predict_proba(X[:1]), [[0.75, 0.25]], atol=1e-4)
    assert cal.n_labelled_ == 4


def test_linc_matches_a_direct_scipy_optimisation():
    X, y = BIASED_X, BIASED_Y
    P = softmax(X, axis=1)
    reg = 0.05

    def objective(theta):  # written independently: no analytic gradient
        W, b = theta[:4].reshape(2, 2), theta[4:]
        z = P @ W.T + b
        nll = -np.mean(z[np.arange(4), y] - np.log(np.exp(z).sum(axis=1)))
        return nll + reg / 2 * (np.sum((W - np.eye(2)) ** 2) + np.sum(b**2))

    direct = minimize(objective, np.zeros(6), method="BFGS", options={"gtol": 1e-9}).x
    cal = LinearProbeCalibration(reg=reg).fit(X, y)
    np.testing.assert_allclose(cal.W_, direct[:4].reshape(2, 2), atol=1e-4)
    np.testing.assert_allclose(cal.b_, direct[4:], atol=1e-4)
    test = rng_scores(6, 2)
    z = softmax(test, axis=1) @ direct[:4].reshape(2, 2).T + direct[4:]
    np.testing.assert_allclose(cal.predict_proba(test), softmax(z, axis=1), atol=1e-5)
    np.testing.assert_allclose(cal.transform(test), np.log(softmax(z, axis=1)), atol=1e-4)


def test_linc_optimum_is_stationary_three_labels():
    # At the optimum reg * (W - I) = -(1/n) sum_i (q_i - e_{y_i}) p_i^T and reg * b = -(1/n)
    # sum_i (q_i - e_{y_i}): the gradient of the mean cross-entropy balances the penalty.
    X, y = rng_scores(9, 3, seed=5), np.array([0, 1, 2] * 3)
    cal = LinearProbeCalibration(reg=0.1).fit(X, y)
    P, Q = softmax(X, axis=1), cal.predict_proba(X)
    residual = (Q - np.eye(3)[y]) / 9
    np.testing.assert_allclose(0.1 * (cal.W_ - np.eye(3)), -residual.T @ P, atol=1e-6)
    np.testing.assert_allclose(0.1 * cal.b_, -residual.sum(axis=0), atol=1e-6)


def test_linc_removes_a_label_bias_learned_from_labelled_examples():
    assert NoCalibration().predict(BIASED_X).tolist() == [1, 1, 1, 1]
    cal = LinearProbeCalibration().fit(BIASED_X, BIASED_Y)
    assert cal.predict(BIASED_X).tolist() == BIASED_Y.tolist()


def test_linc_input_errors():
    with pytest.raises(CalibrationError, match="needs gold labels"):
        LinearProbeCalibration().fit(BIASED_X)
    with pytest.raises(CalibrationError, match="one label per row"):
        LinearProbeCalibration().fit(BIASED_X, [0, 1])
    with pytest.raises(CalibrationError, match="label indices 0..1"):
        LinearProbeCalibration().fit(BIASED_X, [0, 1, 2, 1])
    with pytest.raises(CalibrationError, match="reg must be a positive number"):
        LinearProbeCalibration(reg=0).fit(BIASED_X, BIASED_Y)


# --------------------------------------------------------------------------- Hidden Calibration

# Label 0 at (0, 0) and (2, 0): centroid (1, 0); label 1 at (0, 4) and (0, 6): centroid (0, 5).
# Squared distances to their centroids: 1, 1, 1, 1, so the pooled variance is 4 / (4 * 2) = 0.5.
HIDDEN = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [0.0, 6.0]])
HIDDEN_Y = np.array([0, 0, 1, 1])


def test_hidden_centroids_variance_and_nearest_centroid_by_hand():
    cal = HiddenCalibration().fit(HIDDEN, HIDDEN_Y)
    np.testing.assert_allclose(cal.centroids_, [[1.0, 0.0], [0.0, 5.0]])
    assert cal.variance_ == pytest.approx(0.5)
    assert (cal.n_labelled_, cal.n_classes_, cal.n_features_in_) == (4, 2, 2)
    # (1, 1): squared distances 1 and 1 + 16 = 17 -> log-softmax of [-1, -17] (2 * 0.5 = 1).
    # (0, 3): squared distances 1 + 9 = 10 and 4 -> log-softmax of [-10, -4].
    test = np.array([[1.0, 1.0], [0.0, 3.0]])
    expected = np.array([[-1.0, -17.0], [-10.0, -4.0]])
    expected -= np.log(np.exp(expected).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(cal.transform(test), expected)
    assert cal.predict(test).tolist() == [0, 1]
    np.testing.assert_allclose(cal.predict_proba(test), np.exp(expected))


def test_hidden_label_without_examples_is_never_predicted():
    cal = HiddenCalibration().fit(HIDDEN, [0, 0, 2, 2], n_classes=3)
    np.testing.assert_array_equal(cal.classes_, [0, 2])
    proba = cal.predict_proba([[1.0, 1.0], [0.0, 3.0], [0.0, 0.5]])
    assert proba[:, 1].tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert cal.predict([[0.0, 3.0]]).tolist() == [2]


def test_hidden_input_errors():
    with pytest.raises(CalibrationError, match="needs gold labels"):
        HiddenCalibration().fit(HIDDEN)
    with pytest.raises(CalibrationError, match="one label per row of the hidden states"):
        HiddenCalibration().fit(HIDDEN, [0, 1])
    with pytest.raises(CalibrationError, match="n_classes must be at least 2"):
        HiddenCalibration().fit(HIDDEN, HIDDEN_Y, n_classes=1)
    with pytest.raises(CalibrationError, match="non-negative integer"):
        HiddenCalibration().fit(HIDDEN, [0.0, 0.0, 1.0, 1.0])
    with pytest.raises(CalibrationError, match="no spread"):
        HiddenCalibration().fit([[1.0, 2.0], [3.0, 4.0]], [0, 1])
    with pytest.raises(CalibrationError, match="non-finite"):
        HiddenCalibration().fit([[0.0, np.nan], [1.0, 1.0]], [0, 1])
    cal = HiddenCalibration().fit(HIDDEN, HIDDEN_Y)
    with pytest.raises(CalibrationError, match="fitted on 2-dimensional hidden states but got 3"):
        cal.transform(np.zeros((1, 3)))
    with pytest.raises(CalibrationError, match="n x d matrix"):
        cal.transform(np.zeros(2))


# --------------------------------------------------------------------------- kNN prompting

KNN_QUERY = np.log([[0.5, 0.25, 0.25]])


def kl(p, q) -> float:
    """KL(p || q) written out term by term."""
    return sum(pi * np.log(pi / qi) for pi, qi in zip(p, q))


def test_knn_kl_distances_and_votes_by_hand():
    # Anchors (labels 0, 1, 1, 0) as unnormalised log-probabilities (offsets per row).
    anchors = [[0.7, 0.2, 0.1], [0.4, 0.4, 0.2], [0.25, 0.25, 0.5], [0.1, 0.2, 0.7]]
    X = np.log(anchors) + np.array([[-1.0], [2.0], [0.0], [-3.0]])
    y = np.array([0, 1, 1, 0])
    q = [0.5, 0.25, 0.25]
    # KL(anchor || q): 0.0993, 0.0541, 0.1733, 0.5152 -> anchors by distance: 1, 0, 2, 3.
    by_hand = [kl(a, q) for a in anchors]
    cal = KNNPrompting(k=1).fit(X, y)
    np.testing.assert_allclose(cal.distances(KNN_QUERY - 5.0)[0], by_hand)
    assert cal.transform(KNN_QUERY).tolist() == [[0.0, 1.0]]  # nearest: anchor 1, label 1
    three = KNNPrompting(k=3).fit(X, y)  # anchors 1, 0, 2: labels 1, 0, 1
    np.testing.assert_allclose(three.transform(KNN_QUERY), [[1 / 3, 2 / 3]])
    np.testing.assert_allclose(three.predict_proba(KNN_QUERY), [[1 / 3, 2 / 3]])
    assert three.n_labelled_ == 4
    # Four of four anchors: a 2-2 vote goes to the lower label; k above the anchors uses all.
    for k in (4, 10):
        tied = KNNPrompting(k=k).fit(X, y)
        np.testing.assert_allclose(tied.transform(KNN_QUERY), [[0.5, 0.5]])
        assert tied.predict(KNN_QUERY).tolist() == [0]


def test_knn_uses_kl_from_the_anchor_to_the_query():
    # KL(anchor || q) puts anchor 0 nearer (0.507 < 0.678); KL(q || anchor) would put anchor 1
    # nearer (0.837 > 0.743): the direction decides the 1-NN label.
    anchors = [[0.05, 0.4, 0.55], [0.1, 0.1, 0.8]]
    q = [0.5, 0.25, 0.25]
    assert kl(anchors[0], q) < kl(anchors[1], q) and kl(q, anchors[0]) > kl(q, anchors[1])
    cal = KNNPrompting(k=1).fit(np.log(anchors), [0, 1])
    assert cal.predict(KNN_QUERY).tolist() == [0]


def test_knn_input_errors():
    X = np.log([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]])
    for k in (0, 1.5, True):
        with pytest.raises(CalibrationError, match="k must be a positive integer"):
            KNNPrompting(k=k).fit(X, [0, 1])
    with pytest.raises(CalibrationError, match="needs gold labels"):
        KNNPrompting().fit(X)
    with pytest.raises(CalibrationError, match="n_classes must be at least 2 and exceed"):
        KNNPrompting().fit(X, [0, 2], n_classes=2)
    cal = KNNPrompting().fit(X, [0, 1])
    with pytest.raises(CalibrationError, match="fitted on 3-dimensional next-token"):
        cal.transform(np.zeros((1, 4)))


# --------------------------------------------------------------------------- PMI_DC


def test_pmi_subtracts_each_examples_domain_premise_scores():
    X = np.log([[0.2, 0.1], [0.3, 0.3]])  # log P(choice | prompt), not normalised
    premise = np.log([[0.4, 0.05], [0.1, 0.3]])  # log P(choice | domain premise), per example
    # Row 0: ratios 0.5 and 2 -> [0.2, 0.8]; row 1: ratios 3 and 1 -> [0.75, 0.25].
    cal = DomainPremisePMI().fit(premise)
    np.testing.assert_allclose(cal.predict_proba(X), [[0.2, 0.8], [0.75, 0.25]])
    np.testing.assert_allclose(cal.transform(X), np.log([[0.2, 0.8], [0.75, 0.25]]))
    assert NoCalibration().predict(X).tolist() == [0, 0] and cal.predict(X).tolist() == [1, 0]
    # One shared premise row (one label word set) applies to every example: row 1's ratios
    # are then 0.3 / 0.4 = 0.75 and 0.3 / 0.05 = 6 -> [1/9, 8/9].
    shared = DomainPremisePMI().fit(premise[:1])
    np.testing.assert_allclose(shared.predict_proba(X), [[0.2, 0.8], [1 / 9, 8 / 9]])
    with pytest.raises(CalibrationError, match="fitted on 2 domain-premise rows"):
        cal.transform(np.zeros((3, 2)))


# --------------------------------------------------------------------------- GC


def test_gc_divides_out_the_marginal_of_the_generated_inputs():
    # Label probabilities after two sampled pseudo-inputs: [0.6, 0.4] and [0.8, 0.2]
    # -> marginal [0.7, 0.3]; [0.5, 0.5] / [0.7, 0.3] renormalised is [0.3, 0.7].
    X_gen = np.log([[0.6, 0.4], [0.8, 0.2]]) + OFFSETS[:2]
    cal = GenerativeCalibration().fit(X_gen)
    np.testing.assert_allclose(cal.prior_, [0.7, 0.3])
    np.testing.assert_allclose(cal.predict_proba(np.log([[0.5, 0.5], [0.7, 0.3]])),
                               [[0.3, 0.7], [0.5, 0.5]])
    assert GenerativeCalibration.needs == "generated" and GenerativeCalibration.space == "prob"


# --------------------------------------------------------------------------- errors


FITTED_NEEDS = [ContextualCalibration, DomainContextCalibration, PrototypicalCalibration,
                BatchCalibration, StreamingBatchCalibration, BatchCalibrationLearned,
                LinearProbeCalibration, DomainPremisePMI, GenerativeCalibration]  # fmt: skip
FEATURE_METHODS = [HiddenCalibration, KNNPrompting]
WITH_LABELS = ("labelled", "hidden_states", "next_token")


@pytest.mark.parametrize("cls", FITTED_NEEDS + FEATURE_METHODS)
def test_not_fitted(cls):
    with pytest.raises(CalibrationError, match="is not fitted; call fit"):
        cls().transform(BIASED_X)
    with pytest.raises(CalibrationError, match="is not fitted"):
        cls().predict(BIASED_X)


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (np.zeros(3), "N x K matrix"),
        (np.zeros((2, 2, 2)), "N x K matrix"),
        (np.zeros((0, 2)), "no rows"),
        (np.zeros((3, 1)), "K >= 2"),
        ([[0.0, np.nan]], "non-finite"),
        ([[0.0, -np.inf]], "non-finite"),
        ([["a", "b"]], "numeric"),
    ],
)
@pytest.mark.parametrize("cls", [NoCalibration, BatchCalibration, ContextualCalibration])
def test_bad_input(cls, X, match):
    with pytest.raises(CalibrationError, match=match):
        cls().fit(X)
    with pytest.raises(CalibrationError, match=match):
        NoCalibration().transform(X)


@pytest.mark.parametrize("cls", [NoCalibration, *FITTED_NEEDS])
def test_label_count_mismatch(cls):
    X, y = two_clusters()
    cal = cls().fit(X, y) if cls.needs == "labelled" else cls().fit(X)
    with pytest.raises(CalibrationError, match="fitted on 2 labels but got scores with 3"):
        cal.transform(rng_scores(5, 3))


def test_unknown_space():
    with pytest.raises(CalibrationError, match="space must be one of"):
        BatchCalibration(space="logit").fit(BIASED_X)


# --------------------------------------------------------------------------- registry


def test_registry_declares_every_method():
    assert set(CALIBRATORS) == {
        "none", "cc", "dc", "pc", "bc", "bcl", "linc", "hidden", "knn", "pmi", "gc",
    }
    assert DEFAULT_METHODS == ("none", "cc", "dc", "pc", "bc", "bcl", "linc")
    needs = {"nothing", "test", "content_free", "domain_context", "labelled", "hidden_states",
             "next_token", "domain_premise", "generated"}
    for name, cls in CALIBRATORS.items():
        assert issubclass(cls, Calibrator)
        assert cls.name == name
        assert cls.space in ("logprob", "prob")
        assert cls.needs in needs
        assert isinstance(cls.extra_forward_passes, str) and cls.extra_forward_passes
    assert CALIBRATORS["cc"].extra_forward_passes == "3 per prompt"
    assert CALIBRATORS["bcl"].needs == CALIBRATORS["linc"].needs == "labelled"
    assert {n for n, c in CALIBRATORS.items() if issubclass(c, FeatureCalibrator)} == {
        "hidden", "knn",
    }


def test_get_calibrator():
    cal = get_calibrator("BC", space="prob")
    assert isinstance(cal, BatchCalibration) and cal.get_params() == {"space": "prob"}
    assert get_calibrator("bcl").get_params() == {
        "gammas": None,
        "criterion": "accuracy",
        "space": "logprob",
    }
    assert get_calibrator("LinC", reg=0.5).get_params() == {"reg": 0.5, "max_iter": 500}
    assert get_calibrator("knn", k=5).get_params() == {"k": 5}
    with pytest.raises(CalibrationError, match="Unknown calibrator 'platt'.*none, cc, dc"):
        get_calibrator("platt")
    with pytest.raises(CalibrationError, match="accepts: space"):
        get_calibrator("bc", momentum=0.5)
    assert issubclass(CalibrationError, LmboostError)


@pytest.mark.parametrize("name", sorted(CALIBRATORS))
def test_every_calibrator_gives_distributions(name):
    X, y = two_clusters()
    cal = get_calibrator(name)
    assert (cal.fit(X, y) if cal.needs in WITH_LABELS else cal.fit(X)) is cal
    fitted = {k: v.copy() for k, v in vars(cal).items() if isinstance(v, np.ndarray)}
    proba = cal.predict_proba(X)
    assert proba.shape == X.shape and np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert cal.predict(X).shape == (80,)
    for key, value in fitted.items():  # transform and predict never change what fit learned
        np.testing.assert_array_equal(getattr(cal, key), value)


# --------------------------------------------------------------------------- scikit-learn API

# Every calibrator (the registry's and streaming BC) with hyper-parameters that differ from its
# defaults, where it has any.
NON_DEFAULT = {
    NoCalibration: {},
    ContextualCalibration: {},
    DomainContextCalibration: {},
    GenerativeCalibration: {},
    DomainPremisePMI: {},
    HiddenCalibration: {},
    BatchCalibration: {"space": "prob"},
    StreamingBatchCalibration: {"space": "prob", "momentum": 0.5},
    BatchCalibrationLearned: {"gammas": [0.0, 0.5, 1.0], "criterion": "macro_f1", "space": "prob"},
    PrototypicalCalibration: {
        "n_init": 2, "reg_covar": 1e-4, "covariance_type": "diag", "random_state": 3,
    },
    LinearProbeCalibration: {"reg": 0.1, "max_iter": 50},
    KNNPrompting: {"k": 5},
}
ALL_CLASSES = list(NON_DEFAULT)


def fit_on_clusters(cal: Calibrator, X: np.ndarray, y: np.ndarray) -> Calibrator:
    """Fit ``cal`` on what it needs, from the two-cluster data (scores double as features)."""
    return cal.fit(X, y) if cal.needs in WITH_LABELS else cal.fit(X)


def learned(cal: Calibrator) -> list[str]:
    """The names of what ``fit`` learned (attributes ending in ``_``)."""
    return sorted(a for a in vars(cal) if a.endswith("_") and not a.startswith("_"))


def test_every_registered_calibrator_has_a_sklearn_case():
    assert set(CALIBRATORS.values()) | {StreamingBatchCalibration} == set(ALL_CLASSES)
    for cls in ALL_CLASSES:
        assert issubclass(cls, BaseEstimator)
        assert "get_params" not in vars(cls) and "__repr__" not in vars(cls)


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_init_stores_parameters_unchanged(cls):
    params = NON_DEFAULT[cls]
    cal = cls(**params)
    for key, value in params.items():
        assert getattr(cal, key) is value  # no copy, no conversion, no validation
    assert cal.get_params() == cls().get_params() | params
    assert learned(cal) == []
    # The repr names the parameters that differ from the defaults and builds an equal copy.
    namespace = {c.__name__: c for c in ALL_CLASSES}
    assert eval(repr(cal), namespace).get_params() == cal.get_params()
    for key in params:
        assert f"{key}=" in repr(cal)


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_clone_is_an_unfitted_copy_with_equal_params(cls):
    X, y = two_clusters()
    cal = fit_on_clusters(cls(**NON_DEFAULT[cls]), X, y)
    assert "n_classes_" in learned(cal)
    check_is_fitted(cal)
    copy = clone(cal)
    assert type(copy) is cls and copy is not cal
    assert copy.get_params() == cal.get_params()
    assert learned(copy) == []
    if cls.needs == "nothing":
        check_is_fitted(copy)  # stateless: ready without fit
    else:
        with pytest.raises(NotFittedError):
            check_is_fitted(copy)
        with pytest.raises(CalibrationError, match="is not fitted; call fit"):
            copy.transform(X)
    # The clone fitted on the same data gives the same calibration; the original is unchanged.
    before = cal.predict_proba(X)
    np.testing.assert_allclose(fit_on_clusters(copy, X, y).predict_proba(X), before)
    np.testing.assert_array_equal(cal.predict_proba(X), before)


def test_check_is_fitted_via_sklearn():
    assert NoCalibration().__sklearn_is_fitted__()
    with pytest.raises(NotFittedError):
        check_is_fitted(BatchCalibration())
    with pytest.raises(NotFittedError):
        check_is_fitted(KNNPrompting())
    check_is_fitted(BatchCalibration().fit(BIASED_X))
    # A streaming estimate is fitted after its first partial_fit.
    check_is_fitted(StreamingBatchCalibration().partial_fit(BIASED_X[:1]))


@pytest.mark.parametrize(
    "cls", [c for c in ALL_CLASSES if not NON_DEFAULT[c]], ids=lambda c: c.__name__
)
def test_set_params_without_hyperparameters(cls):
    cal = cls()
    assert cal.get_params() == {} and cal.set_params() is cal
    with pytest.raises(ValueError, match="Invalid parameter 'space'"):
        cal.set_params(space="prob")


def test_set_params_bc_space():
    cal = BatchCalibration()
    assert cal.set_params(space="prob") is cal and cal.get_params() == {"space": "prob"}
    P = softmax(BIASED_X, axis=1)
    np.testing.assert_allclose(cal.fit(BIASED_X).transform(BIASED_X), P - P.mean(axis=0))
    cal.set_params(space="logit")  # checked by fit, not by set_params
    with pytest.raises(CalibrationError, match="space must be one of"):
        cal.fit(BIASED_X)


def test_set_params_streaming_momentum():
    X = rng_scores(30, 3)
    S = normalise(X, "logprob")
    cal = StreamingBatchCalibration().set_params(momentum=0.5)
    cal.fit(X[:10]).partial_fit(X[10:])
    np.testing.assert_allclose(cal.mean_, 0.5 * S[:10].mean(axis=0) + 0.5 * S[10:].mean(axis=0))
    cal.set_params(momentum=None).fit(X[:10]).partial_fit(X[10:])  # back to the cumulative mean
    np.testing.assert_allclose(cal.mean_, S.mean(axis=0))
    with pytest.raises(CalibrationError, match="momentum"):
        cal.set_params(momentum=2.0).fit(X)


def test_set_params_bcl():
    cal = BatchCalibrationLearned().set_params(gammas=[0.0])
    cal.fit(BIASED_X, BIASED_Y)
    assert cal.gamma_ == 0.0  # no calibration: the raw argmax (always label 1)
    np.testing.assert_allclose(cal.transform(BIASED_X), normalise(BIASED_X, "logprob"))
    assert cal.set_params(gammas=[1.0]).fit(BIASED_X, BIASED_Y).gamma_ == 1.0  # plain BC
    assert cal.predict(BIASED_X).tolist() == BIASED_Y.tolist()
    with pytest.raises(CalibrationError, match="criterion must be one of"):
        cal.set_params(criterion="auc").fit(BIASED_X, BIASED_Y)


def test_set_params_linc_reg():
    X, y = two_clusters()
    cal = LinearProbeCalibration().set_params(reg=1e6).fit(X, y)
    np.testing.assert_allclose(cal.W_, np.eye(2), atol=1e-4)  # a strong pull to the identity
    weak = cal.set_params(reg=1e-3).fit(X, y)
    assert np.abs(weak.W_ - np.eye(2)).max() > 0.1
    with pytest.raises(CalibrationError, match="reg must be a positive number"):
        cal.set_params(reg=0).fit(X, y)


def test_set_params_knn_k():
    X, y = two_clusters()
    cal = KNNPrompting().set_params(k=1).fit(X, y)
    assert cal.predict(X).tolist() == y.tolist()  # each row's nearest anchor is itself
    cal.set_params(k=80).fit(X, y)  # every anchor votes: 40 against 40
    np.testing.assert_allclose(cal.transform(X), 0.5)
    with pytest.raises(CalibrationError, match="k must be a positive integer"):
        cal.set_params(k=0).fit(X, y)


def test_set_params_pc_covariance_type():
    X, _ = two_clusters()
    cal = PrototypicalCalibration().set_params(covariance_type="diag").fit(X)
    assert cal.gmm_.covariance_type == "diag" and cal.gmm_.covariances_.shape == (2, 2)
    cal.set_params(covariance_type="full", n_init=1).fit(X)
    assert cal.gmm_.covariances_.shape == (2, 2, 2) and cal.gmm_.n_init == 1


SWEEPS = {
    "none": {},
    "cc": {},
    "dc": {},
    "gc": {},
    "pmi": {},
    "hidden": {},
    "bc": {"space": ["logprob", "prob"]},
    "bcl": {
        "gammas": [None, [0.0, 1.0], [-1.0, 2.0]],
        "criterion": ["accuracy", "macro_f1"],
        "space": ["logprob", "prob"],
    },
    "pc": {
        "n_init": [1, 2],
        "covariance_type": ["full", "diag"],
        "reg_covar": [1e-6, 1e-3],
        "random_state": [0, 7],
    },
    "linc": {"reg": [0.01, 1.0], "max_iter": [5, 500]},
    "knn": {"k": [1, 3, 7, 100]},
}


def test_sweeps_cover_the_registry():
    assert set(SWEEPS) == set(CALIBRATORS)
    for name, grid in SWEEPS.items():
        assert set(grid) == set(get_calibrator(name).get_params())


@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_sweep_with_clone_equals_fresh_calibrators(name):
    X, y = two_clusters()
    X_test, _ = two_clusters(seed=1)
    base = get_calibrator(name)
    defaults = base.get_params()
    for params in ParameterGrid(SWEEPS[name]):
        swept = fit_on_clusters(clone(base).set_params(**params), X, y)
        fresh = fit_on_clusters(get_calibrator(name, **params), X, y)
        assert swept.get_params() == fresh.get_params() == defaults | params
        assert learned(swept) == learned(fresh)
        np.testing.assert_array_equal(swept.predict_proba(X_test), fresh.predict_proba(X_test))
        np.testing.assert_array_equal(swept.predict(X_test), fresh.predict(X_test))
    assert base.get_params() == defaults and learned(base) == []  # the template is untouched


def test_streaming_sweep_with_clone_equals_fresh():
    X = rng_scores(60, 3)
    base = StreamingBatchCalibration()
    for params in ParameterGrid({"space": ["logprob", "prob"], "momentum": [None, 0.0, 0.9]}):
        swept = clone(base).set_params(**params).fit(X[:20]).partial_fit(X[20:])
        fresh = StreamingBatchCalibration(**params).fit(X[:20]).partial_fit(X[20:])
        np.testing.assert_array_equal(swept.mean_, fresh.mean_)
        assert swept.n_seen_ == fresh.n_seen_ == 60
        np.testing.assert_array_equal(swept.transform(X), fresh.transform(X))
    assert learned(base) == []
