"""The fast networks' convolution rewrites against a float64 NumPy convolution of their definition."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxart.fast.networks import phase_conv, reflect_pad, upsample_conv

TOLERANCE = 1e-5  # float32 sums of up to 9 * 9 * 4 products of unit normals, relative to their scale


def numpy_valid_conv(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Stride-1 VALID convolution (cross-correlation) of NHWC x with an HWIO kernel, in float64."""
    k = kernel.shape[0]
    h, w = x.shape[1] - k + 1, x.shape[2] - k + 1
    out = np.zeros((x.shape[0], h, w, kernel.shape[-1]))
    for i in range(k):
        for j in range(k):
            out += np.einsum("bhwc,co->bhwo", x[:, i : i + h, j : j + w], kernel[i, j])
    return out


def check(got: jnp.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    assert np.abs(np.asarray(got, np.float64) - want).max() <= TOLERANCE * np.abs(want).max()


@pytest.mark.parametrize("shape", [(2, 13, 11, 3), (1, 9, 9, 5), (1, 20, 17, 4)])
@pytest.mark.parametrize("kernel", [3, 9])
def test_phase_conv_is_the_convolution(shape, kernel):
    rng = np.random.default_rng(0)
    x, k = rng.normal(size=shape), rng.normal(size=(kernel, kernel, shape[-1], 6))
    check(phase_conv(jnp.asarray(x, jnp.float32), jnp.asarray(k, jnp.float32)), numpy_valid_conv(x, k))


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (1, 1, 1, 2), (1, 2, 3, 8)])
def test_upsample_conv_is_upsample_reflect_then_convolve(shape):
    rng = np.random.default_rng(1)
    x, k = rng.normal(size=shape), rng.normal(size=(3, 3, shape[-1], 5))
    upsampled = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
    want = numpy_valid_conv(np.pad(upsampled, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect"), k)
    check(upsample_conv(jnp.asarray(x, jnp.float32), jnp.asarray(k, jnp.float32)), want)


def test_upsample_conv_takes_only_3x3():
    with pytest.raises(ValueError, match="3x3"):
        upsample_conv(jnp.zeros((1, 4, 4, 2)), jnp.zeros((5, 5, 2, 2)))


def test_reflect_pad_does_not_repeat_the_edge():
    x = jnp.arange(4.0).reshape(1, 2, 2, 1)
    assert reflect_pad(x, 1)[0, :, :, 0].tolist() == [[3, 2, 3, 2], [1, 0, 1, 0], [3, 2, 3, 2], [1, 0, 1, 0]]


@pytest.mark.parametrize("shape", [(1, 1, 1, 2), (2, 3, 5, 3), (1, 9, 4, 1)])
@pytest.mark.parametrize("pad", [1, 4])
def test_reflect_pad_is_numpys_at_any_size(shape, pad):
    """Including pads wider than the picture (a 1x1 one, or 3 rows padded by 4), reflected again."""
    x = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    want = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    np.testing.assert_array_equal(np.asarray(reflect_pad(jnp.asarray(x), pad)), want)
