"""Scan filtering and transforms."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from noksr_ros.config import IngestConfig
from noksr_ros.preprocess import ScanFilter, transform_points


def test_filter_drops_near_far_and_ego_points():
    filt = ScanFilter(2.0, 50.0, (-3.0, -1.0, -2.0, 3.0, 1.0, 0.5))
    pts = np.array([[1.0, 0.0, 0.0],    # too near
                    [60.0, 0.0, 0.0],   # too far
                    [2.5, 0.5, -1.0],   # inside the ego box (hood), beyond min range
                    [10.0, 0.0, -1.5],  # kept
                    [0.0, 2.5, 0.0]],   # kept: beside the car, outside the box
                   dtype=np.float32)
    assert filt.keep_mask(pts).tolist() == [False, False, False, True, True]
    assert filt.apply(pts).shape == (2, 3)


def test_filter_from_config_uses_the_ingest_section():
    cfg = IngestConfig()
    filt = ScanFilter.from_config(cfg)
    assert filt.max_range_m == cfg.max_range_m and filt.ego_box_m == cfg.ego_box_m


def test_transform_with_offset_keeps_precision_far_from_origin():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-50, 50, (1000, 3)).astype(np.float32)
    tf = np.eye(4)
    tf[:3, :3] = Rotation.from_euler('xyz', [0.1, -0.2, 1.3]).as_matrix()
    tf[:3, 3] = [5_000_000.123, -3_000_000.456, 12.5]
    offset = np.array([5_000_000.0, -3_000_000.0, 0.0])
    local = transform_points(pts, tf, offset)
    exact = pts.astype(np.float64) @ tf[:3, :3].T + (tf[:3, 3] - offset)
    assert local.dtype == np.float32
    assert np.max(np.abs(local - exact)) < 1e-4


def test_transform_rejects_bad_matrices():
    with pytest.raises(ValueError, match='4x4'):
        transform_points(np.zeros((3, 3), np.float32), np.eye(3))
    bad = np.eye(4)
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match='finite'):
        transform_points(np.zeros((3, 3), np.float32), bad)
