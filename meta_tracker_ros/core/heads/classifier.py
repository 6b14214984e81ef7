"""Online target classifier: a correlation filter on projected backbone features.

Why this shape: a frozen ImageNet backbone gives generic features; what makes them a tracker is a
small filter fitted online to *this* target against *this* background. The filter is

1. initialised in closed form by ridge regression between the target patch and background patches
   of the first frame (Learning to Track Any Object, eq. 1-3; the dual form because there are far
   fewer samples than filter weights), then
2. refined by a few steepest-descent steps on a dense loss over whole score maps (DiMP-style
   hinge: background is only penalised where it scores positive), with an exact line search on
   the Gauss-Newton model times learned step multipliers.

The solver itself lives in :mod:`.solver` as differentiable tensor functions shared with the
meta-training library; this module holds the per-target state around it. Its constants (the
regularisers, per-iteration and per-channel step multipliers, label and spatial-weight
functions) and the feature projection come either from the hand-set configuration or from the
learned file that meta-training writes (:mod:`.learned`, loaded by default).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from meta_tracker_ros.core.config import ClassifierConfig
from meta_tracker_ros.core.geometry import iround
from meta_tracker_ros.core.heads import solver as S
from meta_tracker_ros.core.heads.solver import SolverParams, ridge_dual  # noqa: F401 (re-export)


def level_scales(feats: dict[str, torch.Tensor], levels: Sequence[str]) -> dict[str, float]:
    """1 / first-frame standard deviation per level (levels have very different magnitudes)."""
    return {lv: 1.0 / max(float(feats[lv].std()), 1e-6) for lv in levels}


def concat_levels(
    feats: dict[str, torch.Tensor], levels: Sequence[str], scale: dict[str, float]
) -> torch.Tensor:
    """Scale each level, resample coarser levels to the first level's grid, concatenate."""
    size = feats[levels[0]].shape[-2:]
    parts = []
    for lv in levels:
        f = feats[lv] * scale[lv]
        if f.shape[-2:] != size:
            f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
        parts.append(f)
    return torch.cat(parts, dim=1)


def project(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """1x1 projection ``weight @ x + bias`` of (N, C, H, W) features."""
    return torch.einsum("kc,nchw->nkhw", weight, x) + bias.view(1, -1, 1, 1)


def unit_energy_scale(y: torch.Tensor) -> torch.Tensor:
    """Factor that gives projected features unit mean energy per cell (on the fit frame)."""
    return 1.0 / y.pow(2).sum(1).mean().sqrt().clamp(min=1e-6)


class FeatureProjector:
    """Normalise, resample and concatenate backbone levels, then project to ``proj_dim``.

    Each level is divided by its first-frame standard deviation, coarser levels are bilinearly
    upsampled to the finest level's grid, and a 1x1 projection reduces the channels: the learned
    one from meta-training when given (MetaCREST's learned reduction), else a PCA fitted on the
    first frame. The output is scaled to unit mean energy on the first frame. Everything is
    fixed after frame 1 so memory samples from different frames stay comparable.
    """

    def __init__(
        self,
        levels: Sequence[str],
        proj_dim: int,
        weight: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> None:
        self.levels = list(levels)
        self.proj_dim = int(proj_dim)
        self.learned = weight is not None
        self.level_scale: dict[str, float] = {}
        self.weight: torch.Tensor | None = weight
        self.bias: torch.Tensor | None = bias
        self.out_scale = 1.0

    def fit(self, feats: dict[str, torch.Tensor]) -> None:
        """Fit level scales (and the PCA when not learned) on first-frame features."""
        self.level_scale = level_scales(feats, self.levels)
        x = concat_levels(feats, self.levels, self.level_scale)
        if not self.learned:
            flat = x.permute(1, 0, 2, 3).reshape(x.shape[1], -1)  # (C, N*H*W)
            mean = flat.mean(dim=1)
            centred = flat - mean[:, None]
            cov = centred @ centred.T / centred.shape[1]
            _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
            k = min(self.proj_dim, vecs.shape[1])
            self.weight = vecs[:, -k:].flip(1).T.contiguous()
            self.bias = -(self.weight @ mean)
        assert self.weight is not None and self.bias is not None
        self.weight = self.weight.to(x.device)
        self.bias = self.bias.to(x.device)
        self.out_scale = float(unit_energy_scale(project(x, self.weight, self.bias)))

    def __call__(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N, proj_dim, H, W) features with unit mean energy per cell (on the fit frame)."""
        assert self.weight is not None and self.bias is not None
        x = concat_levels(feats, self.levels, self.level_scale)
        return project(x, self.weight, self.bias) * self.out_scale


def odd(v: float, lo: int, hi: int) -> int:
    """Nearest odd integer to ``v`` within [lo, hi] (odd filters keep the peak centred)."""
    k = iround(v)
    if k % 2 == 0:
        k += 1 if v >= k else -1
    return max(lo, min(hi, k))


def filter_size(config: ClassifierConfig, target_cells: tuple[float, float]) -> tuple[int, int]:
    """Odd filter (height, width) in cells for a target of ``target_cells`` (h, w) cells."""
    kh = odd(target_cells[0] * config.filter_cells, 1, config.max_filter_size)
    kw = odd(target_cells[1] * config.filter_cells, 1, config.max_filter_size)
    return kh, kw


def handset_solver(
    config: ClassifierConfig, update_steps: int, channels: int, device: torch.device
) -> SolverParams:
    """The hand-set solver constants of ``config`` (the tracker before meta-training)."""
    return SolverParams.handset(
        channels,
        ridge_reg=config.ridge_reg,
        reg=config.reg,
        init_steps=config.init_steps,
        update_steps=update_steps,
        step_size=config.step_size,
        label_sigma=config.label_sigma,
        hinge_threshold=config.hinge_threshold,
        device=device,
    )


class FilterClassifier:
    """A single-output convolution filter ``(1, C, kh, kw)`` scoring feature maps.

    Scores are trained towards the solver's label (peak 1 at the target centre).
    """

    def __init__(
        self,
        config: ClassifierConfig,
        channels: int,
        device: torch.device,
        solver: SolverParams | None = None,
        update_steps: int = 2,
    ) -> None:
        self.cfg = config
        self.device = device
        self.channels = channels
        self.params = (
            solver if solver is not None else handset_solver(config, update_steps, channels, device)
        )
        if self.params.log_channel_steps.numel() != channels:
            raise ValueError(
                f"solver has {self.params.log_channel_steps.numel()} channel steps, "
                f"features have {channels} channels"
            )
        self.filter = torch.zeros(1, channels, 1, 1, device=device)
        self._wf: torch.Tensor | None = None
        self._wf_key: tuple | None = None

    # ------------------------------------------------------------------ scoring
    @property
    def padding(self) -> tuple[int, int]:
        return (self.filter.shape[2] // 2, self.filter.shape[3] // 2)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, 1, H, W) score maps (same grid as the features)."""
        return F.conv2d(x, self.filter, padding=self.padding)

    def targets(
        self, shape: tuple[int, int], centers: list[tuple[float, float]], dims
    ) -> torch.Tensor:
        """(N, 3, H, W) label / target-mask / spatial-weight maps (see solver.label_maps)."""
        c = torch.tensor(centers, dtype=torch.float32, device=self.device).view(-1, 2)
        return S.label_maps(self.params, shape, c, dims)

    # ------------------------------------------------------------------ fitting
    def initialize(
        self,
        x: torch.Tensor,
        targets: torch.Tensor,
        weights: torch.Tensor,
        center: tuple[float, float],
        target_cells: tuple[float, float],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Ridge init on sample 0 (target vs background patches), then the init iterations.

        ``center`` is the target's (row, col) cell in sample 0 and ``target_cells`` its
        (height, width) in cells. Returns the samples' spectra and, after init iterations,
        their scores under the final filter: what the sample memory starts from.
        """
        kh, kw = filter_size(self.cfg, target_cells)
        self.filter = S.ridge_filter(
            x[0:1], center, target_cells, kh, kw, self.cfg.ridge_negatives, self.params
        )
        self._wf_key = None
        xf = self.spectra(x)
        mults = [m.exp() for m in self.params.log_init_steps]
        if not mults:
            return xf, None
        energy = S.sample_energy(x)
        iterates, scores = S.descend(self.filter, xf, targets, weights, mults, self.params, energy)
        self.filter = iterates[-1]
        return xf, scores

    # ------------------------------------------------------------------ Fourier-domain training
    def spectra(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-padded 2-D spectra of (N, C, H, W) features, as stored in the sample memory.

        Padding to ``H + k`` makes the circular products equal to the linear ('same' padded)
        correlation of ``scores``; a single-output convolution is slow on CPUs, while the
        spectra turn every training step into a few elementwise products and small FFTs.
        """
        return S.spectra(x, tuple(self.filter.shape[-2:]))

    def fft_size(self, hw) -> tuple[int, int]:
        return S.fft_size(hw, tuple(self.filter.shape[-2:]))

    def scores_from_spectra(self, xf: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """Same as :meth:`scores` from :meth:`spectra` output (cheaper on CPU, reuses the FFT)."""
        size = self.fft_size(hw)
        if self._wf_key != size:  # cached until the filter or the map size changes
            self._wf = S.kernel_spectrum(self.filter, size).conj()
            self._wf_key = size
        return S.scores_from_spectra(xf, self.filter, hw, self._wf)

    def refine(
        self,
        xf: torch.Tensor,
        targets: torch.Tensor,
        weights: torch.Tensor,
        steps: int,
        energy: torch.Tensor | None = None,
        scores: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """``steps`` online-update iterations on memory samples (spectra, targets, weights).

        Uses the update step multipliers, which meta-training learns separately from the
        initialisation ones (Meta-Tracker: initialisation steps diverge when reused here).
        ``energy`` is the samples' :func:`.solver.sample_energy` (the memory keeps it);
        ``scores`` their score maps under the current filter when known (see
        :func:`.solver.descend`). Returns the samples' scores under the new filter (None when
        ``steps`` is 0).
        """
        if steps <= 0:
            return None
        mults = [self.params.update_step(i) for i in range(steps)]
        iterates, new_scores = S.descend(
            self.filter, xf, targets, weights, mults, self.params, energy, scores
        )
        self.filter = iterates[-1]
        self._wf_key = None
        return new_scores
