"""Sample-quality metrics on a judge's outputs: pure numpy functions, computed in float64.

* Frechet distance between Gaussians fitted to two feature sets (FID, with the judge's
  penultimate features in place of Inception's: "FCD");
* Inception-style score exp(E_x KL(p(y|x) || p(y))) from the judge's softmax;
* class coverage: the histogram of predicted classes and its KL divergence to uniform;
* of a conditional generator, per class the share of its samples classified as asked;
* k-nearest-neighbour precision and recall (Kynkaanniemi et al., 2019).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# A class is "missing" when it gets less than this fraction of its uniform share (1/K):
# with 10 classes, under 5% of the samples. MNIST's rarest test class (5) holds 8.9%.
MIN_SHARE_OF_UNIFORM = 0.5


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D), float64, of features (N, D), N >= 2."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"expected features (N >= 2, D), got {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (rounding negatives to 0)."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Squared 2-Wasserstein distance between N(mu1, sigma1) and N(mu2, sigma2):

        ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2)).

    sigma1 sigma2 is similar to the symmetric PSD matrix S = sigma1^(1/2) sigma2 sigma1^(1/2),
    so the trace term is sum(sqrt(eig(S))) from symmetric eigensolvers: real by construction,
    with no complex sqrtm residue to discard. Result clipped at 0 against rounding.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"mismatched shapes: mu {mu1.shape} {mu2.shape}, sigma {sigma1.shape} {sigma2.shape}")
    root1 = _sqrt_psd((sigma1 + sigma1.T) / 2)
    inner = root1 @ sigma2 @ root1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0.0, None)).sum()
    diff = mu1 - mu2
    return max(float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt), 0.0)


def frechet_distance_of(features1: np.ndarray, features2: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to features (N1, D) and (N2, D)."""
    return frechet_distance(*gaussian_stats(features1), *gaussian_stats(features2))


def _kl_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p_i || q) for each row p_i of p (N, K), with 0 log 0 = 0."""
    safe_p = np.where(p > 0, p, 1.0)
    return np.sum(np.where(p > 0, p * (np.log(safe_p) - np.log(np.where(p > 0, q, 1.0))), 0.0), axis=-1)


def inception_score(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """Inception-style score of class probabilities (N, K): mean and std over `splits` equal parts.

    Per part: exp(mean_x KL(p(y|x) || p(y))), p(y) the part's mean prediction, as in
    Salimans et al. (2016). Ranges from 1 (all alike or all unsure) to K (confident and
    balanced). Parts are consecutive; the last N mod splits samples are left out.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) < splits or splits < 1:
        raise ValueError(f"expected probabilities (N >= splits = {splits}, K), got {probs.shape}")
    size = len(probs) // splits
    scores = []
    for part in probs[: size * splits].reshape(splits, size, -1):
        scores.append(np.exp(_kl_rows(part, part.mean(axis=0)).mean()))
    return float(np.mean(scores)), float(np.std(scores))


class Coverage(NamedTuple):
    """How predicted classes spread over K classes.

    counts (K,): samples per class; histogram (K,): counts / N; kl_to_uniform: KL(histogram ||
    uniform) in nats, 0 for perfect balance, log K when all samples are one class; missing:
    classes under MIN_SHARE_OF_UNIFORM / K of the samples; mode_collapse: any class missing.
    """

    counts: np.ndarray
    histogram: np.ndarray
    kl_to_uniform: float
    missing: list[int]
    mode_collapse: bool


def class_coverage(probs: np.ndarray, min_share: float = MIN_SHARE_OF_UNIFORM) -> Coverage:
    """Coverage of the argmax classes of probabilities (N, K), N >= 1 (see `Coverage`)."""
    probs = np.asarray(probs)
    if probs.ndim != 2 or len(probs) == 0:
        raise ValueError(f"expected probabilities (N >= 1, K), got {probs.shape}")
    k = probs.shape[1]
    counts = np.bincount(probs.argmax(axis=1), minlength=k)
    histogram = counts / counts.sum()
    kl = float(_kl_rows(histogram[None], np.full(k, 1.0 / k))[0])
    missing = [int(c) for c in np.flatnonzero(histogram < min_share / k)]
    return Coverage(counts, histogram, kl, missing, bool(missing))


def class_accuracy(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per class c of probabilities (N, K), the share of the samples asked for c (labels (N,) == c)
    whose argmax class is c: (K,) float64, NaN for a class none was asked for."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    if probs.ndim != 2 or labels.shape != probs.shape[:1]:
        raise ValueError(f"expected probabilities (N, K) and labels (N,), got {probs.shape} and {labels.shape}")
    k = probs.shape[1]
    asked = np.bincount(labels, minlength=k)[:k]
    hits = np.bincount(labels[probs.argmax(axis=1) == labels], minlength=k)[:k]
    return np.where(asked > 0, hits / np.maximum(asked, 1), np.nan)


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances (N, M) between rows of a (N, D) and b (M, D)."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def _knn_radii(points: np.ndarray, k: int, block: int) -> np.ndarray:
    """Squared distance from each point (N, D) to its k-th nearest other point: (N,)."""
    radii = np.empty(len(points))
    for start in range(0, len(points), block):
        d = _squared_distances(points[start : start + block], points)
        # Column 0 of the partition is the point itself (distance 0), so index k is the k-th other.
        radii[start : start + block] = np.partition(d, k, axis=1)[:, k]
    return radii


def _inside(queries: np.ndarray, centres: np.ndarray, radii: np.ndarray, block: int) -> np.ndarray:
    """Whether each query (Q, D) lies in some ball (centre, squared radius): bool (Q,)."""
    found = np.empty(len(queries), dtype=bool)
    for start in range(0, len(queries), block):
        d = _squared_distances(queries[start : start + block], centres)
        found[start : start + block] = (d <= radii[None, :]).any(axis=1)
    return found


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3, block: int = 1000) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al., 2019) of features (N, D) vs (M, D).

    Each set's manifold is the union of balls around its points reaching their k-th nearest
    neighbour. Precision: the fraction of fake points inside the real manifold (quality);
    recall: the fraction of real points inside the fake manifold (diversity). Costs
    O((N + M)^2 D) time and O(block * max(N, M)) memory; subsample large sets first.

    Precision inherits the k-NN balls' outlier sensitivity (Naeem et al., 2020): one outlying
    real point has a large ball, and a tight fake cluster inside it counts as all precise.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"expected features (N, D) and (M, D), got {real.shape} and {fake.shape}")
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"need more than k = {k} points in each set, got {len(real)} and {len(fake)}")
    precision = _inside(fake, real, _knn_radii(real, k, block), block).mean()
    recall = _inside(real, fake, _knn_radii(fake, k, block), block).mean()
    return float(precision), float(recall)
