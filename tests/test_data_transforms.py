"""Top-down geometry: box -> center/scale, affine crops, flips, half-body, augmentation ranges."""

import cv2
import numpy as np
import pytest

from mamkpd.data import DATASETS
from mamkpd.data.transforms import (
    affine_points,
    box_to_center_scale,
    crop_to_image,
    flip_keypoints,
    get_affine_transform,
    half_body_center_scale,
    random_scale_rotation,
)


def _hrnet_three_point_affine(center, scale, rot, output_size):
    """HRNet's get_affine_transform construction (three point pairs), as the reference."""
    src_w, (dst_w, dst_h) = scale[0], output_size
    rad = np.pi * rot / 180
    sn, cs = np.sin(rad), np.cos(rad)
    src_dir = np.array([0 * cs - (src_w * -0.5) * sn, 0 * sn + (src_w * -0.5) * cs])
    dst_dir = np.array([0, dst_w * -0.5])
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0], src[1] = center, center + src_dir
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = dst[0] + dst_dir
    for pts in (src, dst):
        d = pts[0] - pts[1]
        pts[2] = pts[1] + np.array([-d[1], d[0]])
    return cv2.getAffineTransform(src, dst)


def test_box_to_center_scale_fixes_aspect_and_pads():
    c, s = box_to_center_scale([10, 20, 30, 100], aspect_ratio=0.75)
    np.testing.assert_allclose(c, [25, 70])
    np.testing.assert_allclose(s, [75 * 1.25, 100 * 1.25])
    c, s = box_to_center_scale([0, 0, 200, 100], aspect_ratio=0.75, padding=1.0)
    np.testing.assert_allclose(s, [200, 200 / 0.75], rtol=1e-6)


@pytest.mark.parametrize("rot", [0.0, 17.0, -45.0, 90.0])
def test_affine_matches_hrnet_and_round_trips(rot):
    center, scale = np.array([320.5, 211.0]), np.array([150.0, 200.0])
    ours = get_affine_transform(center, scale, rot, (192, 256))
    np.testing.assert_allclose(ours, _hrnet_three_point_affine(center, scale, rot, (192, 256)), atol=1e-3)
    np.testing.assert_allclose(affine_points(center, ours), [96, 128], atol=1e-4)
    pts = np.random.default_rng(0).uniform(0, 600, size=(20, 2))
    back = affine_points(affine_points(pts, ours), get_affine_transform(center, scale, rot, (192, 256), inverse=True))
    np.testing.assert_allclose(back, pts, atol=1e-3)


def test_udp_affine_maps_box_onto_pixel_centre_grid():
    center, scale = np.array([100.0, 80.0]), np.array([96.0, 128.0])
    m = get_affine_transform(center, scale, 0.0, (192, 256), udp=True)
    np.testing.assert_allclose(affine_points(center, m), [95.5, 127.5], atol=1e-4)
    left_edge = center - [scale[0] / 2, 0]
    np.testing.assert_allclose(affine_points(left_edge, m)[0], 0.0, atol=1e-4)
    pts = np.array([[3.0, 4.0], [190.0, 250.0]])
    img = crop_to_image(pts, center, scale, (256, 192), udp=True)
    np.testing.assert_allclose(affine_points(img, m), pts, atol=1e-3)


def test_crop_to_image_inverts_the_test_crop():
    center, scale = np.array([50.0, 60.0]), np.array([90.0, 120.0])
    pts = np.array([[10.0, 20.0], [96.0, 128.0], [191.0, 255.0]])
    img = crop_to_image(pts, center, scale, (256, 192))
    np.testing.assert_allclose(affine_points(img, get_affine_transform(center, scale, 0, (192, 256))), pts, atol=1e-3)
    np.testing.assert_allclose(img[1], center, atol=1e-4)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_flip_pairs_are_involutive_and_match_left_right_names(name):
    info = DATASETS[name]
    flat = [i for pair in info.flip_pairs for i in pair]
    assert len(flat) == len(set(flat)) and max(flat) < info.num_keypoints
    names = info.keypoint_names
    assert len(names) == info.num_keypoints
    partner = {i: j for i, j in info.flip_pairs} | {j: i for i, j in info.flip_pairs}
    for k, n in enumerate(names):
        mirrored = n.replace("left", "#").replace("right", "left").replace("#", "right")
        assert names[partner.get(k, k)] == mirrored, (name, n)
    kp = np.random.default_rng(1).uniform(0, 300, size=(info.num_keypoints, 3)).astype(np.float32)
    once = flip_keypoints(kp, 640, info.flip_pairs)
    np.testing.assert_allclose(flip_keypoints(once, 640, info.flip_pairs), kp, atol=1e-4)
    i, j = info.flip_pairs[0]
    np.testing.assert_allclose(once[j], [639 - kp[i, 0], kp[i, 1], kp[i, 2]], atol=1e-4)


def test_half_body_box_covers_the_chosen_joints():
    info = DATASETS["coco"]
    kp = np.random.default_rng(2).uniform(50, 400, size=(17, 2)).astype(np.float32)
    for seed in range(10):
        c, s = half_body_center_scale(kp, np.ones(17), info.upper_body_ids, 0.75, np.random.default_rng(seed))
        assert s[0] / s[1] == pytest.approx(0.75, rel=1e-5)
        ids = (
            list(info.upper_body_ids) if np.allclose(c, kp[list(info.upper_body_ids)].mean(0)) else list(range(11, 17))
        )
        np.testing.assert_allclose(c, kp[ids].mean(0), atol=1e-3)
        span = kp[ids].max(0) - kp[ids].min(0)
        assert s[0] >= 1.5 * span[0] - 1e-3 and s[1] >= 1.5 * span[1] - 1e-3
    assert half_body_center_scale(kp, np.eye(17)[0], info.upper_body_ids, 0.75, np.random.default_rng(0)) is None


def test_random_scale_rotation_ranges_follow_hrnet():
    rng = np.random.default_rng(3)
    draws = np.array([random_scale_rotation(rng, 0.35, 45.0, 0.6) for _ in range(4000)])
    assert draws[:, 0].min() >= 0.65 and draws[:, 0].max() <= 1.35
    assert np.abs(draws[:, 1]).max() <= 90.0
    assert 0.35 < np.mean(draws[:, 1] == 0) < 0.45  # rotation applied with p 0.6
