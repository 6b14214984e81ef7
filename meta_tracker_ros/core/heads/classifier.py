"""Online target classifier: a correlation filter on projected backbone features.

Why this shape: a frozen ImageNet backbone gives generic features; what makes them a tracker is a
small filter fitted online to *this* target against *this* background. The filter is

1. initialised in closed form by ridge regression between the target patch and background patches
   of the first frame (Learning to Track Any Object, eq. 1-3; the dual form because there are far
   fewer samples than filter weights), then
2. refined by a few steepest-descent steps on a dense loss over whole score maps (DiMP-style
   hinge: background is only penalised where it scores positive), with an exact line search on
   the Gauss-Newton model times a per-parameter step scale.

The per-channel step scale and the initial filter are explicit tensors that can be loaded from a
``torch.save``'d dict (``ClassifierConfig.weights_path``) so a meta-training job can learn them
(Meta-Tracker, Retina-MAML kernel-wise learning rates); the hand-set defaults (ones, ridge init)
work without it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from meta_tracker_ros.core.config import ClassifierConfig


def _iround(v: float) -> int:
    """Round half up to an int (also for numpy and torch scalars)."""
    return math.floor(float(v) + 0.5)


class FeatureProjector:
    """Normalise, resample and concatenate backbone levels, then project with a fixed PCA.

    Each level is divided by its first-frame standard deviation (levels have very different
    magnitudes), coarser levels are bilinearly upsampled to the finest level's grid, and a PCA
    fitted on the first frame reduces the channels. Fixing the projection after frame 1 keeps
    memory samples from different frames comparable (as ATOM freezes its projection).
    """

    def __init__(self, levels: Sequence[str], proj_dim: int) -> None:
        self.levels = list(levels)
        self.proj_dim = int(proj_dim)
        self.level_scale: dict[str, float] = {}
        self.mean: torch.Tensor | None = None
        self.proj: torch.Tensor | None = None  # (proj_dim, C_total)
        self.out_scale = 1.0

    def _concat(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        size = feats[self.levels[0]].shape[-2:]
        parts = []
        for lv in self.levels:
            f = feats[lv] * self.level_scale[lv]
            if f.shape[-2:] != size:
                f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
            parts.append(f)
        return torch.cat(parts, dim=1)

    def fit(self, feats: dict[str, torch.Tensor]) -> None:
        """Fit level scales and the PCA on first-frame features (any batch size)."""
        for lv in self.levels:
            self.level_scale[lv] = 1.0 / max(float(feats[lv].std()), 1e-6)
        x = self._concat(feats)
        flat = x.permute(1, 0, 2, 3).reshape(x.shape[1], -1)  # (C, N*H*W)
        self.mean = flat.mean(dim=1)
        centred = flat - self.mean[:, None]
        cov = centred @ centred.T / centred.shape[1]
        _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
        k = min(self.proj_dim, vecs.shape[1])
        self.proj = vecs[:, -k:].flip(1).T.contiguous()
        y = self._project(x)
        self.out_scale = 1.0 / max(float(y.pow(2).sum(1).mean().sqrt()), 1e-6)

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        assert self.proj is not None and self.mean is not None
        x = x - self.mean.view(1, -1, 1, 1)
        return torch.einsum("kc,nchw->nkhw", self.proj, x)

    def __call__(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N, proj_dim, H, W) features with unit mean energy per cell (on the fit frame)."""
        return self._project(self._concat(feats)) * self.out_scale


def ridge_dual(a: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """Ridge regression ``argmin_w ||A w - y||^2 + lam ||w||^2`` in the dual form.

    ``w = A^T (A A^T + lam I)^-1 y`` (push-through identity) costs O(N^2 D) for N samples of
    dimension D, which is what we want for a handful of pooled patches with D in the thousands.
    """
    n = a.shape[0]
    gram = a @ a.T + lam * torch.eye(n, dtype=a.dtype, device=a.device)
    alpha = torch.linalg.solve(gram, y.reshape(n, 1))
    return (a.T @ alpha).reshape(-1)


def _patch(x: torch.Tensor, row: float, col: float, kh: int, kw: int) -> torch.Tensor:
    """(1, C*kh*kw) patch of (1, C, H, W) features centred on a fractional cell (bilinear).

    Sampling at the exact target centre matters: rounding it to a whole cell biases the ridge
    filter, and with it every later peak, by up to half a cell.
    """
    h, w = x.shape[-2:]
    rows = row + torch.arange(kh, dtype=torch.float32, device=x.device) - kh // 2
    cols = col + torch.arange(kw, dtype=torch.float32, device=x.device) - kw // 2
    gy = ((2.0 * rows + 1.0) / h - 1.0).view(-1, 1).expand(kh, kw)
    gx = ((2.0 * cols + 1.0) / w - 1.0).view(1, -1).expand(kh, kw)
    grid = torch.stack([gx, gy], dim=-1).unsqueeze(0)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(1, -1)


def odd(v: float, lo: int, hi: int) -> int:
    """Nearest odd integer to ``v`` within [lo, hi] (odd filters keep the peak centred)."""
    k = _iround(v)
    if k % 2 == 0:
        k += 1 if v >= k else -1
    return max(lo, min(hi, k))


class FilterClassifier:
    """A single-output convolution filter ``(1, C, kh, kw)`` scoring feature maps.

    Scores are trained towards a Gaussian label with peak 1 at the target centre.
    """

    def __init__(self, config: ClassifierConfig, channels: int, device: torch.device) -> None:
        self.cfg = config
        self.device = device
        self.channels = channels
        self.filter = torch.zeros(1, channels, 1, 1, device=device)
        # Per-input-channel step scale (kernel-wise learning rates); ones = plain steepest descent.
        self.step_scale = torch.ones(1, channels, 1, 1, device=device)
        self._prior: torch.Tensor | None = None
        self._wf: torch.Tensor | None = None
        self._wf_key: tuple | None = None
        if config.weights_path:
            self._load(Path(config.weights_path))

    def _load(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"classifier.weights_path {path} does not exist")
        data = torch.load(path, map_location=self.device, weights_only=True)
        if "step_scale" in data:
            s = torch.as_tensor(data["step_scale"], dtype=torch.float32, device=self.device)
            if s.numel() != self.channels:
                raise ValueError(f"{path}: step_scale has {s.numel()} values, need {self.channels}")
            self.step_scale = s.reshape(1, self.channels, 1, 1)
        if "filter" in data:
            f = torch.as_tensor(data["filter"], dtype=torch.float32, device=self.device)
            if f.ndim != 4 or f.shape[:2] != (1, self.channels):
                raise ValueError(f"{path}: filter must be (1, {self.channels}, k, k)")
            self._prior = f

    # ------------------------------------------------------------------ scoring
    @property
    def padding(self) -> tuple[int, int]:
        return (self.filter.shape[2] // 2, self.filter.shape[3] // 2)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, 1, H, W) score maps (same grid as the features)."""
        return F.conv2d(x, self.filter, padding=self.padding)

    # ------------------------------------------------------------------ fitting
    def initialize(
        self,
        x: torch.Tensor,
        labels: torch.Tensor,
        weights: torch.Tensor,
        center: tuple[float, float],
        target_cells: tuple[float, float],
    ) -> None:
        """Ridge init on sample 0 (target vs background patches), then refine on all samples.

        ``center`` is the target's (row, col) cell in sample 0 and ``target_cells`` its
        (height, width) in cells.
        """
        cfg = self.cfg
        kh = odd(target_cells[0] * cfg.filter_cells, 1, cfg.max_filter_size)
        kw = odd(target_cells[1] * cfg.filter_cells, 1, cfg.max_filter_size)
        if self._prior is not None:
            self.filter = F.interpolate(self._prior, size=(kh, kw), mode="bilinear").clone()
        else:
            self.filter = self._ridge_filter(x[0:1], center, target_cells, kh, kw)
        self._wf_key = None
        self.refine(self.spectra(x), labels, weights, cfg.init_steps)

    def _ridge_filter(
        self,
        x: torch.Tensor,
        center: tuple[float, float],
        target_cells: tuple[float, float],
        kh: int,
        kw: int,
    ) -> torch.Tensor:
        cfg = self.cfg
        h, w = x.shape[-2:]
        r0, c0 = float(center[0]), float(center[1])
        coords = [(r0, c0)]
        n_neg = max(0, cfg.ridge_negatives)
        for i in range(n_neg):
            ang = 2.0 * math.pi * i / max(n_neg, 1)
            r = min(max(r0 + math.sin(ang) * target_cells[0], 0.0), h - 1.0)
            c = min(max(c0 + math.cos(ang) * target_cells[1], 0.0), w - 1.0)
            coords.append((r, c))
        patches = torch.cat([_patch(x, r, c, kh, kw) for r, c in coords])
        y = torch.zeros(len(coords), device=x.device)
        y[0] = 1.0
        lam = cfg.ridge_reg * float(patches.pow(2).sum(1).mean())
        wvec = ridge_dual(patches, y, max(lam, 1e-6))
        return wvec.reshape(1, x.shape[1], kh, kw)

    # ------------------------------------------------------------------ Fourier-domain training
    def spectra(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-padded 2-D spectra of (N, C, H, W) features, as stored in the sample memory.

        Padding to ``H + k`` makes the circular products below equal to the linear ('same'
        padded) correlation of ``scores``; a single-output convolution is slow on CPUs, while the
        spectra turn every training step into a few elementwise products and small FFTs.
        """
        p = self.fft_size(x.shape[-2:])
        return torch.fft.rfft2(x, s=p)

    def fft_size(self, hw) -> tuple[int, int]:
        kh, kw = self.filter.shape[-2:]
        return (int(hw[0]) + kh, int(hw[1]) + kw)

    def scores_from_spectra(self, xf: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """Same as :meth:`scores` from :meth:`spectra` output (cheaper on CPU, reuses the FFT)."""
        size = self.fft_size(hw)
        key = size
        if self._wf_key != key:  # cached until the filter or the map size changes
            self._wf = self._circ(self.filter, size).conj()
            self._wf_key = key
        sf = (xf * self._wf).sum(dim=1, keepdim=True)
        return torch.fft.irfft2(sf, s=size)[:, :, : hw[0], : hw[1]]

    def _circ(self, w: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Spectrum of a (1, C, kh, kw) kernel placed with its centre at the origin."""
        ph, pw = self.padding
        big = F.pad(w, (0, size[1] - w.shape[3], 0, size[0] - w.shape[2]))
        return torch.fft.rfft2(torch.roll(big, shifts=(-ph, -pw), dims=(2, 3)))

    def _uncirc(self, g: torch.Tensor) -> torch.Tensor:
        ph, pw = self.padding
        kh, kw = self.filter.shape[-2:]
        return torch.roll(g, shifts=(ph, pw), dims=(2, 3))[:, :, :kh, :kw]

    def refine(
        self, xf: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, steps: int
    ) -> None:
        """Steepest descent with exact line search on the (hinge) L2 loss.

        ``xf`` are sample spectra from :meth:`spectra`. The loss is
        ``sum_j weights_j ||r_j||^2 + lam ||w||^2`` with ``r = s - y`` on target cells and
        ``max(s, 0)`` on background cells (DiMP's hinge). The step is the exact minimiser along
        ``d = step_scale * gradient`` of the Gauss-Newton model, times ``config.step_size``.
        """
        if steps <= 0:
            return
        cfg = self.cfg
        h, w_ = labels.shape[-2:]
        size = self.fft_size((h, w_))
        sw = weights.view(-1, 1, 1, 1)
        # Parseval: per-sample energy from the half spectrum (interior columns count twice).
        cw = torch.full((xf.shape[-1],), 2.0, device=xf.device)
        cw[0] = 1.0
        if size[1] % 2 == 0:
            cw[-1] = 1.0
        power = (xf.real.pow(2) + xf.imag.pow(2)) * cw
        energy = float((power.sum(dim=(1, 2, 3)) * weights).sum()) / (size[0] * size[1])
        lam = cfg.reg * max(energy / xf.shape[1], 1e-6)
        fg = labels > cfg.hinge_threshold
        y = labels * fg
        w = self.filter

        def apply(kernel: torch.Tensor) -> torch.Tensor:
            sf = (xf * self._circ(kernel, size).conj()).sum(dim=1, keepdim=True)
            return torch.fft.irfft2(sf, s=size)[:, :, :h, :w_]

        for _ in range(steps):
            s = apply(w)
            act = fg | (s > 0)
            r = torch.where(fg, s - y, s) * act
            rf = torch.fft.rfft2(r * sw, s=size)
            gf = (xf * rf.conj()).sum(dim=0, keepdim=True)
            g = self._uncirc(torch.fft.irfft2(gf, s=size)) + lam * w
            d = g * self.step_scale
            jd = apply(d) * act
            den = float((sw * jd.pow(2)).sum()) + lam * float(d.pow(2).sum())
            if den <= 0:
                break
            alpha = float((g * d).sum()) / den
            w = w - cfg.step_size * alpha * d
        self.filter = w
        self._wf_key = None
