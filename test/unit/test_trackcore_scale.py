"""Scale filter: fast sampling and DFT equal the plain formulation; it follows a size change."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.core.scale import ScaleFilter


def _blob_map(center: tuple[float, float], radius: float, size: int = 48) -> torch.Tensor:
    """(1, 4, size, size) features of a textured disc: a target whose extent is visible."""
    rows = torch.arange(size, dtype=torch.float32).view(-1, 1)
    cols = torch.arange(size, dtype=torch.float32).view(1, -1)
    d = ((rows - center[0]) ** 2 + (cols - center[1]) ** 2).sqrt() / radius
    disc = torch.sigmoid(6.0 * (1.0 - d))
    ring = torch.exp(-8.0 * (d - 1.0) ** 2)
    return torch.stack([disc, ring, disc * torch.cos(3 * d), 1 - disc])[None]


def _reference_sample(sf: ScaleFilter, feat, center, size) -> np.ndarray:
    """The per-scale formulation: the feature map expanded to one image per scale."""
    _, c, h, w = feat.shape
    k = int(sf.cfg.sample_cells)
    lin = (torch.arange(k, dtype=torch.float32) + 0.5) / k - 0.5
    f = torch.as_tensor(sf.factors, dtype=torch.float32).view(-1, 1, 1)
    pad = sf.cfg.sample_padding
    rows = center[0] + lin.view(1, -1, 1) * size[0] * pad * f
    cols = center[1] + lin.view(1, 1, -1) * size[1] * pad * f
    gy = ((2.0 * rows + 1.0) / h - 1.0).expand(-1, k, k)
    gx = ((2.0 * cols + 1.0) / w - 1.0).expand(-1, k, k)
    grid = torch.stack([gx, gy], dim=-1)
    s = grid.shape[0]
    out = F.grid_sample(feat.expand(s, -1, -1, -1), grid, mode="bilinear", align_corners=False)
    return out.reshape(s, c * k * k).T.numpy().astype(np.float64)


def test_sampling_and_dft_equal_the_plain_formulation():
    sf = ScaleFilter(TrackerConfig().scale)
    torch.manual_seed(0)
    feat = torch.randn(1, 8, 30, 34)
    center, size = (14.3, 17.8), (9.5, 6.25)
    fast = sf._sample_one(feat, center, size)
    assert np.array_equal(fast, _reference_sample(sf, feat, center, size))
    maps = [(feat, center, size), (torch.randn(1, 5, 15, 17), (7.1, 8.9), (4.7, 3.1))]
    spectrum = sf._spectrum(maps)
    assert np.allclose(spectrum, np.fft.fft(sf._sample(maps), axis=1), rtol=0, atol=1e-10)


def test_estimate_follows_a_growing_target():
    cfg = TrackerConfig().scale
    sf = ScaleFilter(cfg)
    center = (24.0, 24.0)
    sf.initialize([(_blob_map(center, 8.0), center, (16.0, 16.0))])
    assert abs(sf.estimate([(_blob_map(center, 8.0), center, (16.0, 16.0))]) - 1.0) < 0.01
    est = {
        g: sf.estimate([(_blob_map(center, 8.0 * g), center, (16.0, 16.0))])
        for g in (1 / 1.2, 1 / 1.1, 1.1, 1.2)
    }
    # One training sample gives a weak, but correctly signed and ordered, response.
    assert est[1 / 1.2] < est[1 / 1.1] < 0.998 and 1.002 < est[1.1] < est[1.2], est
