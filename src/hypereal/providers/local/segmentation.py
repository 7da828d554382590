"""Foreground segmentation for `local-remove-background`: GrabCut, seeded from the border.

Classical, not a neural matting model. It works best for a subject on a reasonably plain
or distinct background (product shots, portraits on a wall, logos), and it assumes the
subject sits inside the frame: the outer border is taken as background evidence.

Steps: the border strip's colours are modelled (their median and spread); border pixels
close to that colour are certain background, the rest of the strip only probable
background, and inside pixels very close to the border colour probable background too.
GrabCut then refines colour models and the graph cut on a working copy of at most
`WORK_EDGE` pixels; the mask is cleaned (small specks dropped, pinholes closed), scaled
back and feathered by a pixel along the edge so the alpha is smooth, not stair-stepped.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

Pixels = npt.NDArray[np.uint8]

WORK_EDGE = 512
ITERATIONS = 4
BORDER_FRACTION = 0.04
MIN_SPECK_FRACTION = 0.002
BORDER_CLUSTERS = 4
MIN_BORDER_SHARE = 0.1


def foreground_mask(rgb: Pixels) -> Pixels:
    """Alpha (uint8, 0..255, same height and width) of the foreground of an RGB image."""
    height, width = rgb.shape[:2]
    scale = min(1.0, WORK_EDGE / max(height, width))
    small = rgb
    if scale < 1.0:
        size = (round(width * scale), round(height * scale))
        small = np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), np.uint8)
    hard = _grabcut(small)
    hard = _clean(hard)
    if scale < 1.0:
        soft = cv2.resize(hard.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        hard = (soft > 0.5).astype(np.uint8)
    feathered = cv2.GaussianBlur(hard.astype(np.float32), (0, 0), 0.8)
    return np.asarray(np.round(feathered * 255), np.uint8)


def _grabcut(rgb: Pixels) -> Pixels:
    height, width = rgb.shape[:2]
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    margin = max(2, round(min(height, width) * BORDER_FRACTION))
    border = np.ones((height, width), bool)
    border[margin:-margin, margin:-margin] = False
    near_background = _near_border_colours(lab, border)

    mask = np.full((height, width), cv2.GC_PR_FGD, np.uint8)
    mask[near_background] = cv2.GC_PR_BGD
    mask[border] = cv2.GC_PR_BGD
    mask[border & near_background] = cv2.GC_BGD
    if not (mask == cv2.GC_PR_FGD).any():
        return np.zeros((height, width), np.uint8)  # nothing stands out from the background
    background_model = np.zeros((1, 65), np.float64)
    foreground_model = np.zeros((1, 65), np.float64)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    try:
        cv2.grabCut(bgr, mask, (0, 0, 1, 1), background_model, foreground_model, ITERATIONS, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        # Too few samples of one class for a colour model: the colour-distance seed is the answer.
        return np.asarray(mask == cv2.GC_PR_FGD, np.uint8)
    return np.asarray(np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)), np.uint8)


def _near_border_colours(lab: npt.NDArray[np.float32], border: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Pixels whose colour is one of the border's colours (sky and grass, wall and floor...).

    The border colours are grouped by a small deterministic k-means; a pixel is near the
    background when it lies within the spread of a group that covers a good share of the
    border.
    """
    samples = lab[border]
    step = max(1, len(samples) // 4000)
    centers = _kmeans(samples[::step], BORDER_CLUSTERS)
    to_centers = np.linalg.norm(samples[:, None] - centers[None], axis=2)
    labels = np.argmin(to_centers, axis=1)
    near = np.zeros(lab.shape[:2], bool)
    for i, center in enumerate(centers):
        members = to_centers[labels == i, i]
        if len(members) < MIN_BORDER_SHARE * len(samples):
            continue  # a rare border colour is more likely the subject touching the edge
        spread = float(np.percentile(members, 75)) if len(members) else 0.0
        near |= np.linalg.norm(lab - center, axis=2) < max(6.0, 2.0 * spread)
    return near


def _kmeans(points: npt.NDArray[np.float32], k: int, rounds: int = 12) -> npt.NDArray[np.float32]:
    """Farthest-point start then Lloyd rounds: no randomness, so the cut is reproducible."""
    centers = [np.median(points, axis=0)]
    for _ in range(1, k):
        distance = np.min(np.linalg.norm(points[:, None] - np.asarray(centers)[None], axis=2), axis=1)
        if float(distance.max()) < 4.0:  # the border is (nearly) one colour
            break
        centers.append(points[int(np.argmax(distance))])
    grid = np.asarray(centers, np.float32)
    for _ in range(rounds):
        labels = np.argmin(np.linalg.norm(points[:, None] - grid[None], axis=2), axis=1)
        grid = np.asarray(
            [points[labels == i].mean(axis=0) if (labels == i).any() else grid[i] for i in range(len(grid))],
            np.float32,
        )
    return grid


def _clean(mask: Pixels) -> Pixels:
    """Drop specks smaller than a fraction of the picture and close pinholes in the subject."""
    height, width = mask.shape
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    keep = np.zeros(count, bool)
    if count > 1:
        areas = stats[1:, cv2.CC_STAT_AREA]
        keep[1:] = areas >= max(4, MIN_SPECK_FRACTION * height * width)
        if not keep.any():
            keep[1 + int(np.argmax(areas))] = True
    cleaned = keep[labels].astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    return np.asarray(cv2.morphologyEx(cleaned, cv2.MORPH_CLOSE, kernel), np.uint8)
