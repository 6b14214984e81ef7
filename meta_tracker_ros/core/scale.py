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
        # The DFT over scales as two real matrices: for 17 scales a (D, 17) @ (17, 17) product
        # is several times faster than pocketfft's prime-length transform along the short axis
        # (0.1 vs 0.6 ms for D = 3168 on one core), and equal to float64 rounding.
        angle = -2.0 * np.pi * np.outer(np.arange(n), np.arange(n)) / n
        self._dft_re = np.cos(angle)
        self._dft_im = np.sin(angle)
        k = int(cfg.sample_cells)
        self._lin = ((torch.arange(k, dtype=torch.float32) + 0.5) / k - 0.5).view(1, -1)
        self._factors = torch.as_tensor(self.factors, dtype=torch.float32).view(-1, 1)
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
        """(D, num_scales) matrix: ``feat`` (1, C, H, W) resampled at each scaled box.

        One ``grid_sample`` over a (1, S*k, k) grid (the S scaled boxes stacked) instead of the
        feature map expanded to S images: the same bilinear samples without S-fold batching.
        """
        _, c, h, w = feat.shape
        k = int(self.cfg.sample_cells)
        s = len(self.factors)
        pad = self.cfg.sample_padding
        rows = center[0] + self._lin * size[0] * pad * self._factors  # (S, k) cell coordinates
        cols = center[1] + self._lin * size[1] * pad * self._factors
        gy = ((2.0 * rows + 1.0) / h - 1.0).view(s, k, 1).expand(s, k, k)
        gx = ((2.0 * cols + 1.0) / w - 1.0).view(s, 1, k).expand(s, k, k)
        grid = torch.stack([gx, gy], dim=-1).view(1, s * k, k, 2).to(feat.device)
        out = F.grid_sample(feat, grid, mode="bilinear", align_corners=False)  # (1, C, S*k, k)
        out = out.view(c, s, k, k).permute(0, 2, 3, 1).reshape(c * k * k, s)
        return out.cpu().numpy().astype(np.float64)

    def _spectrum(self, maps) -> np.ndarray:
        """(D, num_scales) DFT over the scale axis of :meth:`_sample`'s matrix."""
        x = self._sample(maps)
        out = np.empty(x.shape, np.complex128)
        np.matmul(x, self._dft_re, out=out.real)
        np.matmul(x, self._dft_im, out=out.imag)
        return out

    def initialize(self, maps) -> None:
        xf = self._spectrum(maps)
        self.num = np.conj(self.yf)[None, :] * xf
        self.den = np.real(np.sum(xf * np.conj(xf), axis=0))

    def update(self, maps) -> None:
        if self.num is None or self.den is None:
            self.initialize(maps)
            return
        lr = self.cfg.learning_rate
        xf = self._spectrum(maps)
        self.num = (1 - lr) * self.num + lr * np.conj(self.yf)[None, :] * xf
        self.den = (1 - lr) * self.den + lr * np.real(np.sum(xf * np.conj(xf), axis=0))

    def estimate(self, maps) -> float:
        """Multiplicative size change that best matches the model (1.0 = unchanged)."""
        assert self.num is not None and self.den is not None
        zf = self._spectrum(maps)
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
