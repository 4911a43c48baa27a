"""Heatmap codecs: round trips, HRNet's target details, decoding edge cases."""

import numpy as np
import pytest

from mamkpd.codecs import CODECS, MSRAHeatmap, UDPHeatmap, build_codec


def _points(codec, n=60, seed=0):
    """Random sub-pixel keypoints at least 8 heatmap px from the border, in input pixels."""
    rng = np.random.default_rng(seed)
    (h, w) = codec.heatmap_size
    hm = rng.uniform([8, 8], [w - 9, h - 9], size=(n, 2))
    return hm * codec._stride(), hm


def _round_trip_error(codec, pts_in):
    errs = []
    for p in pts_in:
        heatmaps, weights = codec.encode(p[None], np.ones(1, bool))
        assert weights.tolist() == [1.0]
        decoded, scores = codec.decode(heatmaps[None])
        errs.append(np.abs(decoded[0, 0] - p) / codec._stride())  # heatmap pixels
    return np.max(errs)


def test_msra_target_is_hrnets_rounded_gaussian():
    codec = MSRAHeatmap((256, 192))
    assert codec.heatmap_size == (64, 48)
    heatmaps, weights = codec.encode(np.array([[41.0, 61.0]]), np.array([True]))  # -> (10.25, 15.25)
    assert heatmaps.shape == (1, 64, 48) and heatmaps.dtype == np.float32
    assert np.unravel_index(heatmaps[0].argmax(), (64, 48)) == (15, 10)
    assert heatmaps[0, 15, 10] == pytest.approx(1.0)
    assert heatmaps[0, 15, 12] == pytest.approx(np.exp(-4 / 8))  # sigma 2, 2 px away
    assert heatmaps[0, 15, 17] == 0.0  # outside HRNet's 3-sigma window (radius 6)


def test_msra_plain_round_trip_returns_the_rounded_point():
    # HRNet's target rounds the keypoint to the heatmap grid, so its round trip is exact up to that
    # rounding (<= 0.5 px); the symmetric target gives the quarter-pixel step nothing to move toward.
    codec = build_codec("msra", (256, 192))
    pts_in, pts_hm = _points(codec)
    for p_in, p_hm in zip(pts_in, pts_hm, strict=True):
        decoded, _ = codec.decode(codec.encode(p_in[None], np.ones(1))[0][None])
        np.testing.assert_allclose(decoded[0, 0] / codec._stride(), np.floor(p_hm + 0.5), atol=1e-5)
    assert _round_trip_error(codec, pts_in) <= 0.5


def test_plain_decoder_round_trip_within_0_3_px_on_subpixel_targets():
    codec = MSRAHeatmap((256, 192), unbiased=True)
    pts_in, _ = _points(codec)
    assert _round_trip_error(codec, pts_in) < 0.3


def test_dark_round_trip_within_0_05_px():
    codec = build_codec("msra_dark", (256, 192))
    assert codec.unbiased
    pts_in, _ = _points(codec)
    assert _round_trip_error(codec, pts_in) < 0.05


@pytest.mark.parametrize("size", [(256, 192), (256, 256)])
def test_udp_round_trip(size):
    codec = build_codec("udp", size)
    assert codec.use_udp and np.allclose(codec._stride(), [(size[1] - 1) / (size[1] / 4 - 1), 255 / 63])
    pts_in, _ = _points(codec)
    assert _round_trip_error(codec, pts_in) < 0.05
    assert _round_trip_error(UDPHeatmap(size, refine="none"), pts_in) < 0.3


def test_quarter_pixel_step_moves_toward_higher_neighbour():
    codec = MSRAHeatmap((256, 192))
    hm = np.zeros((1, 1, 64, 48), np.float32)
    hm[0, 0, 20, 10] = 1.0
    hm[0, 0, 20, 11] = 0.5  # right neighbour higher than the left one
    hm[0, 0, 19, 10] = 0.3  # upper neighbour higher than the lower one
    decoded, scores = codec.decode(hm)
    np.testing.assert_allclose(decoded[0, 0], [(10.25) * 4, (19.75) * 4])
    assert scores[0, 0] == 1.0


def test_invisible_and_off_map_joints_get_zero_weight():
    codec = MSRAHeatmap((256, 192))
    kp = np.array([[50.0, 50.0], [50.0, 50.0], [-40.0, 50.0], [50.0, 300.0], [-10.0, 60.0]])
    heatmaps, weights = codec.encode(kp, np.array([1, 0, 1, 1, 1]))
    assert weights.tolist() == [1.0, 0.0, 0.0, 0.0, 1.0]  # the last one's window still overlaps
    assert heatmaps[1].max() == 0 and heatmaps[2].max() == 0 and heatmaps[4].max() > 0


def test_decode_of_empty_heatmaps_gives_zero_scores_and_origin():
    for name in ("msra", "msra_dark", "udp"):
        decoded, scores = build_codec(name, (256, 192)).decode(np.zeros((2, 3, 64, 48), np.float32))
        assert decoded.shape == (2, 3, 2) and scores.shape == (2, 3)
        assert np.all(scores == 0) and np.all(np.isfinite(decoded))


def test_bad_arguments():
    with pytest.raises(KeyError, match="unknown codec"):
        build_codec("regression", (256, 192))
    with pytest.raises(ValueError, match="refine"):
        MSRAHeatmap((256, 192), refine="megvii")
    with pytest.raises(ValueError, match="shape"):
        MSRAHeatmap((256, 192)).decode(np.zeros((3, 64, 48)))


def test_each_codec_carries_its_name_and_flip_convention():
    # HRNet shifts flip-test heatmaps one pixel (SHIFT_HEATMAP); ViTPose's UDP does not (shift_heatmap=False)
    conventions = {name: (c.name, c.flip_shift, c.use_udp) for name in CODECS for c in [build_codec(name, (256, 192))]}
    assert conventions == {
        "msra": ("msra", True, False),
        "msra_dark": ("msra_dark", True, False),
        "udp": ("udp", False, True),
        "simcc": ("simcc", False, False),  # RTMPose: flip_vectors reverses the bins without a shift
        "darkpose": ("darkpose", False, True),  # TokenPose and PPT: UDP's grid, no flip shift either
    }
