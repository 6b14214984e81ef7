"""Peak finding: the motion gate keeps a weak far peak from pulling the target away."""

from __future__ import annotations

import numpy as np

from meta_tracker_ros.core.config import LocalizationConfig
from meta_tracker_ros.core.localization import PeakKind, find_peak, hann2d

PREV = (12.0, 12.0)  # previous target position in cells (the crop centre)
CELLS = (4.0, 4.0)  # target size in cells: the gate's reach is 0.35 x 5.66 = 2 cells


def _scores(far: float, near: float) -> np.ndarray:
    """A 25 x 25 map with a peak ``far`` 8 cells from PREV and one ``near`` 1 cell from it."""
    s = np.zeros((25, 25), np.float32)
    s[12, 20] = far
    s[12, 13] = near
    return s


def _peak(score: np.ndarray, cfg: LocalizationConfig, gate: bool = True):
    return find_peak(score, 1.0, PREV, CELLS, None, 0.0, cfg, gate=gate)


def test_a_weak_far_peak_gives_way_to_the_best_nearby_one():
    cfg = LocalizationConfig()
    assert cfg.max_jump > 0  # on by default
    p = _peak(_scores(far=0.45, near=0.35), cfg)
    assert (round(p.row), round(p.col)) == (12, 13) and p.value == np.float32(0.35)


def test_a_confident_far_peak_is_taken():
    cfg = LocalizationConfig()
    p = _peak(_scores(far=cfg.jump_min_score + 0.1, near=0.35), cfg)
    assert (round(p.row), round(p.col)) == (12, 20)


def test_no_gate_while_re_detecting_or_when_switched_off():
    score = _scores(far=0.45, near=0.35)
    assert round(_peak(score, LocalizationConfig(), gate=False).col) == 20
    assert round(_peak(score, LocalizationConfig(max_jump=0.0)).col) == 20


def test_the_state_machine_judges_the_nearby_peak():
    """Nothing near the previous position: the kept peak is below lost_threshold, NOT_FOUND."""
    cfg = LocalizationConfig()
    p = _peak(_scores(far=0.45, near=0.0), cfg)
    assert np.hypot(p.row - PREV[0], p.col - PREV[1]) <= 2.0 and p.kind == PeakKind.NOT_FOUND


def test_the_gate_chooses_on_the_windowed_scores():
    """Within the reach, the cosine window still ranks the candidates."""
    cfg = LocalizationConfig()
    score = _scores(far=0.45, near=0.0)
    score[13, 12], score[10, 12] = 0.30, 0.31  # 1 and 2 cells from PREV
    window = hann2d(25, 25)
    p = find_peak(score, 1.0, PREV, CELLS, window, 0.5, cfg)
    assert (round(p.row), round(p.col)) == (13, 12)
