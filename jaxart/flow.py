"""Optical flow for steady video (Ruder, Dosovitskiy & Brox 2016, "Artistic style transfer for
videos"): the motion between consecutive frames, a picture carried along it, and where that
can be trusted.

Conventions:
  * a flow is an (H, W, 2) float32 array of (x, y) displacements in pixels, and `optical_flow(a,
    b)` maps a's pixels onto b: a[p] ~ b[p + flow[p]];
  * to put the previous frame's output in the current frame's place, `warp` it by the flow from
    the current frame to the previous one (`Motion.backward`);
  * `Motion.visible` is 1 where that warp is trusted, 0 where the consistency check (Ruder et
    al., eq. 6-7) finds a disocclusion, a motion boundary, or a source outside the frame.

The flow is OpenCV's DIS (Kroeger et al. 2016, `cv2.DISOpticalFlow`, medium preset) on the
frames' 8-bit luminance: dense, about 20 ms for a 640x480 pair on one CPU core, where
DeepFlow (Ruder et al.'s) takes seconds and is not in OpenCV's main wheel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np

__all__ = ["Motion", "motion", "optical_flow", "pair_error", "pan_zoom", "steady", "temporal_error", "visible", "warp"]

# Ruder et al.'s thresholds: forward-backward disagreement (relative, and absolute in px^2) and
# motion boundaries (relative, and absolute in (px / px)^2).
CONSISTENCY = (0.01, 0.5)
BOUNDARY = (0.01, 0.002)


class Motion(NamedTuple):
    """How a frame came from the one before: `backward`, the (H, W, 2) flow from this frame to
    the previous one, and `visible`, (H, W) float32 1 where the previous frame's pixel there is
    trusted to be this one's, else 0."""

    backward: np.ndarray
    visible: np.ndarray


def _grey(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) float RGB in [0, 1] -> (H, W) uint8 luminance (ITU-R 601)."""
    pixels = np.clip(np.rint(np.asarray(image, np.float32) * 255), 0, 255).astype(np.uint8)
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)


def optical_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The (H, W, 2) float32 flow from (H, W, 3) RGB picture `a` to `b` (floats in [0, 1]):
    a[p] ~ b[p + flow[p]]."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # type: ignore[attr-defined]  # not in cv2's stubs
    return dis.calc(_grey(a), _grey(b), None)


def _sources(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs + flow[..., 0], ys + flow[..., 1]


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """`image` (H, W) or (H, W, C) sampled at p + flow[p], bilinearly, float32: out[p] =
    image[p + flow[p]]. A source outside the frame takes the nearest border pixel (`visible`
    marks it untrusted)."""
    xs, ys = _sources(flow)
    return cv2.remap(np.asarray(image, np.float32), xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def visible(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Ruder et al.'s consistency check: (H, W) float32, 1 where the `backward` flow (this frame
    to the previous) is trusted, 0 where following it and then the `forward` flow (previous to
    this) does not come back (a disocclusion), at a motion boundary, or where it leaves the frame."""
    returned = warp(forward, backward)  # the forward flow where each pixel came from
    relative, absolute = CONSISTENCY
    round_trip = np.sum(np.square(returned + backward), -1)
    disoccluded = round_trip > relative * (np.sum(np.square(returned), -1) + np.sum(np.square(backward), -1)) + absolute
    dudy, dudx = np.gradient(backward[..., 0])
    dvdy, dvdx = np.gradient(backward[..., 1])
    relative, absolute = BOUNDARY
    gradient = dudx**2 + dudy**2 + dvdx**2 + dvdy**2
    boundary = gradient > relative * np.sum(np.square(backward), -1) + absolute
    xs, ys = _sources(backward)
    h, w = backward.shape[:2]
    outside = (xs < 0) | (xs > w - 1) | (ys < 0) | (ys > h - 1)
    return (~(disoccluded | boundary | outside)).astype(np.float32)


def motion(previous: np.ndarray, current: np.ndarray) -> Motion:
    """The `Motion` from (H, W, 3) RGB frame `previous` to `current` (floats in [0, 1]): both
    flows, and their consistency."""
    backward = optical_flow(current, previous)
    return Motion(backward, visible(backward, optical_flow(previous, current)))


def steady(output: np.ndarray, previous_output: np.ndarray, move: Motion, blend: float) -> np.ndarray:
    """A feed-forward network's (H, W, 3) output for a frame, steadied: where `move.visible`,
    `blend` of the previous (steadied) output carried along the flow, `1 - blend` of this one's;
    elsewhere this frame's own. float32."""
    weight = (blend * move.visible)[..., None]
    return (weight * warp(previous_output, move.backward) + (1 - weight) * output).astype(np.float32)


def pair_error(before: np.ndarray, after: np.ndarray, move: Motion) -> float:
    """The mean squared difference between an (H, W, 3) output `after` and the one `before` it
    warped along `move` (the motion between their input frames), over the visible pixels."""
    difference = np.sum(np.square(after - warp(before, move.backward)), -1)
    return float(np.sum(move.visible * difference) / (3 * max(float(np.sum(move.visible)), 1.0)))


def temporal_error(outputs: Sequence[np.ndarray], motions: Sequence[Motion]) -> float:
    """The standard temporal error of a stylised video: `pair_error` averaged over its pairs of
    consecutive (H, W, 3) outputs; `motions[k]` is the motion from input frame k to k + 1."""
    return float(np.mean([pair_error(a, b, move) for a, b, move in zip(outputs[:-1], outputs[1:], motions)]))


def pan_zoom(
    photo: np.ndarray, count: int, shape: tuple[int, int], pan: tuple[float, float], zoom: float
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A clip with known motion: `count` (H, W, 3) frames of `shape`, seen by a camera moving over
    a float RGB `photo`, and the true backward flow of each frame after the first.

    Frame k shows photo point o_k + s_k * p at its pixel p, with s_k = zoom**-k (each
    frame zooms in by `zoom`) and o_k = k * pan (photo pixels per frame, (x, y)), so its
    backward flow is (o_k + s_k p - o_{k-1}) / s_{k-1} - p: affine, exact.
    """
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    frames, flows = [], []
    for k in range(count):
        scale, (ox, oy) = zoom**-k, (k * pan[0], k * pan[1])
        maps = (ox + scale * xs).astype(np.float32), (oy + scale * ys).astype(np.float32)
        frames.append(cv2.remap(np.asarray(photo, np.float32), *maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
        if k:
            before, (bx, by) = zoom ** -(k - 1), ((k - 1) * pan[0], (k - 1) * pan[1])
            flows.append(np.stack([(maps[0] - bx) / before - xs, (maps[1] - by) / before - ys], -1))
    return frames, flows
