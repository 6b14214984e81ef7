"""Scale estimation: a DSST-style 1-D correlation filter over scales, on backbone features.

Why: the classifier only localises; the box size has to come from somewhere without a trained
box regressor. Running the backbone on several scaled crops would multiply its cost, so instead
the already computed feature map of the search crop is resampled (bilinear ``grid_sample``) over
boxes of the target size times ``scale_step**k``. Each resampled box is flattened into one
feature vector per scale, and a discriminative correlation filter over the scale axis (DSST:
Gaussian label over scales, Hann window, running numerator / denominator) picks the scale, with
a parabola fit between scales. Size changes are damped and clipped per frame.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from meta_tracker_ros.core.config import ScaleConfig


class ScaleFilter:
    """Per-target scale filter.

    Methods take ``maps``: a list of ``(feat (1, C, H, W), center (row, col), size (h, w))``
    with centre and size in that map's cells (the tracker converts from classifier cells).
    """

    def __init__(self, cfg: ScaleConfig) -> None:
        self.cfg = cfg
        n = int(cfg.num_scales)
        self.exponents = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        self.factors = cfg.scale_step**self.exponents
        sigma = cfg.sigma_factor * np.sqrt(n)
        y = np.exp(-0.5 * (self.exponents / sigma) ** 2)
        self.yf = np.fft.fft(np.roll(y, -int(np.argmax(y))))
        self.window = np.hanning(n + 2)[1:-1]
        self.num: np.ndarray | None = None
        self.den: np.ndarray | None = None

    def _sample(self, maps) -> np.ndarray:
        """(D, num_scales) matrix from ``[(feat, center, size), ...]``, one entry per map."""
        parts = [self._sample_one(*m) for m in maps]
        if len(parts) > 1:  # equalise the maps' contributions
            parts = [p / max(float(np.sqrt((p**2).mean())), 1e-12) for p in parts]
        return np.concatenate(parts, axis=0) * self.window[None, :]

    def _sample_one(
        self, feat: torch.Tensor, center: tuple[float, float], size: tuple[float, float]
    ) -> np.ndarray:
        """(D, num_scales) matrix: ``feat`` (1, C, H, W) resampled at each scaled box."""
        _, c, h, w = feat.shape
        k = int(self.cfg.sample_cells)
        lin = (torch.arange(k, dtype=torch.float32) + 0.5) / k - 0.5  # in (-0.5, 0.5)
        f = torch.as_tensor(self.factors, dtype=torch.float32).view(-1, 1, 1)
        pad = self.cfg.sample_padding
        rows = center[0] + lin.view(1, -1, 1) * size[0] * pad * f  # (S, k, 1) cell coordinates
        cols = center[1] + lin.view(1, 1, -1) * size[1] * pad * f  # (S, 1, k)
        gy = ((2.0 * rows + 1.0) / h - 1.0).expand(-1, k, k)
        gx = ((2.0 * cols + 1.0) / w - 1.0).expand(-1, k, k)
        grid = torch.stack([gx, gy], dim=-1).to(feat.device)  # (S, k, k, 2)
        s = grid.shape[0]
        out = F.grid_sample(
            feat.expand(s, -1, -1, -1), grid, mode="bilinear", align_corners=False
        )  # (S, C, k, k)
        return out.reshape(s, c * k * k).T.cpu().numpy().astype(np.float64)

    def initialize(self, maps) -> None:
        xf = np.fft.fft(self._sample(maps), axis=1)
        self.num = np.conj(self.yf)[None, :] * xf
        self.den = np.real(np.sum(xf * np.conj(xf), axis=0))

    def update(self, maps) -> None:
        if self.num is None or self.den is None:
            self.initialize(maps)
            return
        lr = self.cfg.learning_rate
        xf = np.fft.fft(self._sample(maps), axis=1)
        self.num = (1 - lr) * self.num + lr * np.conj(self.yf)[None, :] * xf
        self.den = (1 - lr) * self.den + lr * np.real(np.sum(xf * np.conj(xf), axis=0))

    def estimate(self, maps) -> float:
        """Multiplicative size change that best matches the model (1.0 = unchanged)."""
        assert self.num is not None and self.den is not None
        zf = np.fft.fft(self._sample(maps), axis=1)
        lam = self.cfg.reg * float(self.den.mean())
        resp = np.real(np.fft.ifft(np.sum(np.conj(self.num) * zf, axis=0) / (self.den + lam)))
        # The label peak was rolled to index 0: index i means exponent i (wrapped).
        n = len(resp)
        i = int(np.argmax(resp))
        m1, m0, p1 = resp[(i - 1) % n], resp[i], resp[(i + 1) % n]
        den = m1 - 2 * m0 + p1
        off = float(np.clip(0.5 * (m1 - p1) / den, -0.5, 0.5)) if den < 0 else 0.0
        e = i + off
        if e > n / 2:
            e -= n
        return float(self.cfg.scale_step**e)


def smooth_size(
    prev: tuple[float, float], factor: float, damping: float, max_change: float
) -> tuple[float, float]:
    """Apply a damped, clipped multiplicative size change (aspect ratio kept)."""
    f = float(np.clip(factor, 1.0 / max_change, max_change))
    f = f**damping
    return (prev[0] * f, prev[1] * f)
