"""Optical flow for steady video (`jaxart.flow`): warping against known motions (float64 NumPy
references), DIS flow against a camera path whose flow is exact, the consistency check at
borders and disocclusions, the temporal error and the fast networks' steadying."""

import numpy as np
import pytest
from conftest import EXAMPLES

from jaxart import flow, images


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return images.load_image(EXAMPLES / "content.png")


def _bilinear(image: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """float64 bilinear sampling at in-frame points (the reference for `warp`)."""
    image = image.astype(np.float64)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    x1, y1 = np.minimum(x0 + 1, image.shape[1] - 1), np.minimum(y0 + 1, image.shape[0] - 1)
    fx, fy = (xs - x0)[..., None], (ys - y0)[..., None]
    top = (1 - fx) * image[y0, x0] + fx * image[y0, x1]
    bottom = (1 - fx) * image[y1, x0] + fx * image[y1, x1]
    return (1 - fy) * top + fy * bottom


def test_warp_by_a_whole_pixel_shift_is_a_shift(rng):
    image = rng.random((20, 30, 3)).astype(np.float32)
    shift = np.zeros((20, 30, 2), np.float32)
    shift[..., 0], shift[..., 1] = 3, -2  # out[p] = image[x + 3, y - 2]
    out = flow.warp(image, shift)
    np.testing.assert_array_equal(out[2:, :-3], image[:-2, 3:])


def test_warp_by_a_smooth_subpixel_flow_matches_float64_bilinear(rng):
    image = rng.random((24, 32, 3)).astype(np.float32)
    ys, xs = np.mgrid[0:24, 0:32].astype(np.float64)
    field = np.stack([0.3 + 0.05 * ys, -0.7 + 0.02 * xs], -1).astype(np.float32)
    out = flow.warp(image, field)
    sx, sy = xs + field[..., 0], ys + field[..., 1]
    inside = (sx >= 0) & (sx <= 31) & (sy >= 0) & (sy <= 23)
    reference = _bilinear(image, np.clip(sx, 0, 31), np.clip(sy, 0, 23))
    # OpenCV's remap quantises the sub-pixel position to 1/32 px: within 1/32 of the largest step.
    np.testing.assert_allclose(out[inside], reference[inside], atol=1 / 32)
    assert np.abs(out[inside] - reference[inside]).mean() < 5e-3


def test_pan_zoom_flows_are_exact(photo):
    frames, flows = flow.pan_zoom(photo, 3, (60, 80), (2.5, 1.0), 1.0)
    assert len(frames) == 3 and len(flows) == 2 and frames[0].shape == (60, 80, 3)
    # A pure pan by (2.5, 1): frame k's pixel p is frame k-1's p + (2.5, 1).
    np.testing.assert_allclose(flows[0], np.broadcast_to([2.5, 1.0], (60, 80, 2)), atol=1e-5)
    zoomed, zoom_flows = flow.pan_zoom(photo, 2, (60, 80), (0.0, 0.0), 1.25)
    ys, xs = np.mgrid[0:60, 0:80]
    np.testing.assert_allclose(zoom_flows[0][..., 0], xs / 1.25 - xs, atol=1e-4)
    np.testing.assert_allclose(zoom_flows[0][..., 1], ys / 1.25 - ys, atol=1e-4)


def test_warping_along_the_true_flow_reproduces_the_next_frame(photo):
    frames, flows = flow.pan_zoom(photo, 3, (72, 96), (3.0, 1.5), 1.02)
    for before, after, true in zip(frames, frames[1:], flows):
        # Two bilinear resamplings of the photo against one: close, not equal.
        assert np.abs(flow.warp(before, true) - after)[4:-4, 4:-4].mean() < 0.01


def test_dis_flow_recovers_a_known_camera_path(photo):
    frames, flows = flow.pan_zoom(photo, 3, (144, 192), (3.0, 1.5), 1.02)
    for before, after, true in zip(frames, frames[1:], flows):
        move = flow.motion(before, after)
        error = np.linalg.norm(move.backward - true, axis=-1)
        assert np.median(error) < 0.15, np.median(error)  # measured 0.07 px
        assert move.visible.mean() > 0.95


def test_pixels_from_outside_the_frame_are_not_visible():
    backward = np.zeros((10, 12, 2), np.float32)
    backward[..., 0] = 2.5  # each pixel came from 2.5 px to its right: the last 3 columns from outside
    visible = flow.visible(backward, -backward)
    assert visible.dtype == np.float32
    np.testing.assert_array_equal(visible[:, :-3], 1)
    np.testing.assert_array_equal(visible[:, -2:], 0)


def test_a_disocclusion_and_a_motion_boundary_are_not_visible(rng):
    # A textured square moves 6 px right over a still background: behind it, the background it
    # uncovers was hidden in the frame before.
    background = rng.random((64, 64, 3)).astype(np.float32)
    square = rng.random((20, 20, 3)).astype(np.float32)
    before, after = background.copy(), background.copy()
    before[22:42, 16:36], after[22:42, 22:42] = square, square
    backward = np.zeros((64, 64, 2), np.float32)
    forward = np.zeros((64, 64, 2), np.float32)
    backward[22:42, 22:42, 0] = -6  # the square's pixels came from 6 px to the left
    forward[22:42, 16:36, 0] = 6
    visible = flow.visible(backward, forward)
    assert not visible[24:40, 16:21].any()  # uncovered: the round trip lands on the square and back
    assert not visible[22:42, 21:23].any()  # the square's moving edge: a motion boundary
    assert visible[:16].all() and visible[24:40, 26:40].all()  # the still background and the square's inside


def test_temporal_error_against_numpy(rng):
    outputs = [rng.random((8, 10, 3)).astype(np.float32) for _ in range(3)]
    motions = [
        flow.Motion(np.zeros((8, 10, 2), np.float32), (rng.random((8, 10)) > 0.3).astype(np.float32)) for _ in range(2)
    ]
    expected = np.mean(
        [
            np.sum(m.visible[..., None] * (b.astype(np.float64) - a) ** 2) / (3 * m.visible.sum())
            for a, b, m in zip(outputs, outputs[1:], motions)
        ]
    )
    assert flow.temporal_error(outputs, motions) == pytest.approx(expected, rel=1e-5)


def test_a_video_that_follows_the_motion_has_no_temporal_error(photo):
    frames, flows = flow.pan_zoom(photo, 4, (40, 50), (2.0, -1.0), 1.0)
    motions = [flow.Motion(true, flow.visible(true, -true)) for true in flows]  # a pan: forward = -backward
    assert flow.temporal_error(frames, motions) < 1e-10
    noisy = [f + 0.1 * np.float32(k % 2) for k, f in enumerate(frames)]  # every other frame brighter
    assert flow.temporal_error(noisy, motions) == pytest.approx(0.01, rel=1e-3)


def test_steady_blends_where_visible(rng):
    output, previous = (rng.random((6, 8, 3)).astype(np.float32) for _ in range(2))
    visible = np.zeros((6, 8), np.float32)
    visible[:, :4] = 1
    still = flow.Motion(np.zeros((6, 8, 2), np.float32), visible)
    out = flow.steady(output, previous, still, 0.25)
    np.testing.assert_allclose(out[:, :4], 0.25 * previous[:, :4] + 0.75 * output[:, :4], rtol=1e-6)
    np.testing.assert_array_equal(out[:, 4:], output[:, 4:])
    np.testing.assert_array_equal(flow.steady(output, previous, still, 0.0), output)
