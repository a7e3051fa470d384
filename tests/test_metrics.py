"""jaxart.gan.metrics against float64 brute-force references and cases with known answers."""

import math

import numpy as np
import pytest

from jaxart.gan import metrics


def random_spd(rng: np.random.Generator, d: int, rank: int | None = None) -> np.ndarray:
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / d + (0 if rank else 0.1 * np.eye(d))


def frechet_reference(mu1, sigma1, mu2, sigma2) -> float:
    """The textbook formula, with tr((s1 s2)^(1/2)) from the general (non-symmetric) eigensolver."""
    eig = np.linalg.eigvals(sigma1 @ sigma2)
    assert np.abs(eig.imag).max() < 1e-8 * np.abs(eig).max()
    trace_sqrt = np.sqrt(np.clip(eig.real, 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


# --- Frechet distance --------------------------------------------------------------------------


def test_frechet_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=16), random_spd(rng, 16)
    assert metrics.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_frechet_shifted_means_is_squared_shift():
    rng = np.random.default_rng(1)
    mu, sigma, shift = rng.normal(size=8), random_spd(rng, 8), rng.normal(size=8)
    expected = float(shift @ shift)
    assert metrics.frechet_distance(mu, sigma, mu + shift, sigma) == pytest.approx(expected, rel=1e-9)


def test_frechet_diagonal_closed_form():
    # For commuting (diagonal) covariances: ||mu1 - mu2||^2 + sum (sqrt(a) - sqrt(b))^2.
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.1, 3, size=12), rng.uniform(0.1, 3, size=12)
    mu1, mu2 = rng.normal(size=12), rng.normal(size=12)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("rank", [None, 5])  # full rank, and singular as with fewer samples than features
def test_frechet_matches_eigvals_reference(rank):
    rng = np.random.default_rng(3)
    d = 32
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = random_spd(rng, d, rank), random_spd(rng, d)
    got = metrics.frechet_distance(mu1, s1, mu2, s2)
    assert got == pytest.approx(frechet_reference(mu1, s1, mu2, s2), rel=1e-8)
    assert metrics.frechet_distance(mu2, s2, mu1, s1) == pytest.approx(got, rel=1e-8)  # symmetric


def test_frechet_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(4)
    d = 20
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = random_spd(rng, d), random_spd(rng, d)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_frechet_of_samples_from_one_gaussian_is_small():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(20_000, 4)), rng.normal(size=(20_000, 4))
    # Estimation noise only: about 4 * (2 * 4 / 20000) ~ 1e-3; a unit shift would add 1.
    assert metrics.frechet_distance_of(x, y) < 0.01
    assert metrics.frechet_distance_of(x, y + [1, 0, 0, 0]) == pytest.approx(1.0, abs=0.05)


def test_gaussian_stats_are_float64_mean_and_unbiased_cov():
    x = np.random.default_rng(6).normal(size=(50, 3)).astype(np.float32)
    mu, sigma = metrics.gaussian_stats(x)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(sigma, (x - x.mean(0)).T.astype(np.float64) @ (x - x.mean(0)) / 49, rtol=1e-6)


def test_frechet_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        metrics.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# --- Inception-style score ---------------------------------------------------------------------


def inception_reference(probs: np.ndarray, splits: int) -> list[float]:
    size = len(probs) // splits
    scores = []
    for s in range(splits):
        part = probs[s * size : (s + 1) * size]
        marginal = [sum(row[j] for row in part) / size for j in range(part.shape[1])]
        kl = [sum(p * math.log(p / m) for p, m in zip(row, marginal) if p > 0) for row in part]
        scores.append(math.exp(sum(kl) / size))
    return scores


def test_inception_score_matches_loop_reference():
    probs = np.random.default_rng(7).dirichlet(np.full(10, 0.3), size=503)  # 3 left over
    expected = inception_reference(probs, 5)
    mean, std = metrics.inception_score(probs, splits=5)
    assert mean == pytest.approx(np.mean(expected), rel=1e-10)
    assert std == pytest.approx(np.std(expected), rel=1e-8)


def test_inception_score_bounds():
    one_hot_balanced = np.eye(10)[np.arange(1000) % 10]
    assert metrics.inception_score(one_hot_balanced) == pytest.approx((10.0, 0.0), abs=1e-9)
    one_class = np.eye(10)[np.zeros(1000, int)]
    assert metrics.inception_score(one_class) == pytest.approx((1.0, 0.0), abs=1e-12)
    unsure = np.full((1000, 10), 0.1)
    assert metrics.inception_score(unsure) == pytest.approx((1.0, 0.0), abs=1e-12)


def test_inception_score_needs_a_sample_per_split():
    with pytest.raises(ValueError):
        metrics.inception_score(np.full((5, 10), 0.1), splits=10)


# --- class coverage ----------------------------------------------------------------------------


def test_coverage_balanced_and_collapsed():
    balanced = metrics.class_coverage(np.eye(10)[np.arange(1000) % 10])
    assert balanced.kl_to_uniform == pytest.approx(0.0, abs=1e-12)
    assert balanced.missing == [] and not balanced.mode_collapse
    np.testing.assert_array_equal(balanced.counts, np.full(10, 100))

    collapsed = metrics.class_coverage(np.eye(10)[np.full(1000, 7)])
    assert collapsed.kl_to_uniform == pytest.approx(math.log(10), rel=1e-12)
    assert collapsed.missing == [0, 1, 2, 3, 4, 5, 6, 8, 9] and collapsed.mode_collapse


def test_coverage_kl_matches_reference_and_threshold_rule():
    # Class 3 holds 49 of 1000 (under half of the uniform 10%: missing); class 4 holds 50 (not).
    counts = np.array([120, 120, 120, 49, 50, 111, 110, 110, 110, 100])
    labels = np.repeat(np.arange(10), counts)
    coverage = metrics.class_coverage(np.eye(10)[labels])
    q = counts / 1000
    assert coverage.kl_to_uniform == pytest.approx(sum(p * math.log(p * 10) for p in q), rel=1e-12)
    assert coverage.missing == [3] and coverage.mode_collapse
    np.testing.assert_allclose(coverage.histogram, q)


# --- precision and recall ----------------------------------------------------------------------


def precision_recall_reference(real, fake, k):
    def radii(points):
        return [sorted(np.sum((points - p) ** 2, axis=1))[k] for p in points]

    def inside(queries, centres, r):
        return np.mean([any(np.sum((c - q) ** 2) <= rc for c, rc in zip(centres, r)) for q in queries])

    return inside(fake, real, radii(real)), inside(real, fake, radii(fake))


def test_precision_recall_matches_loop_reference():
    rng = np.random.default_rng(8)
    real, fake = rng.normal(size=(150, 5)), rng.normal(0.7, 1.3, size=(120, 5))
    expected = precision_recall_reference(real, fake, k=3)
    assert metrics.precision_recall(real, fake, k=3) == pytest.approx(expected, abs=1e-12)
    assert metrics.precision_recall(real, fake, k=3, block=7) == pytest.approx(expected, abs=1e-12)


def test_precision_recall_toy_cases():
    rng = np.random.default_rng(9)
    real = rng.normal(size=(400, 8))
    assert metrics.precision_recall(real, real) == (1.0, 1.0)
    assert metrics.precision_recall(real, real + 100.0) == (0.0, 0.0)
    # Two real modes; the fake set (jittered copies of one) is all precise but recalls half.
    modes = np.concatenate([real[:200], real[200:] + 50.0])
    fake = modes[:200] + rng.normal(scale=1e-3, size=(200, 8))
    assert metrics.precision_recall(modes, fake) == (1.0, 0.5)


def test_precision_recall_needs_more_than_k_points():
    with pytest.raises(ValueError):
        metrics.precision_recall(np.zeros((3, 2)), np.zeros((10, 2)), k=3)
