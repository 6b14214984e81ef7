"""The classifier's solver as plain, differentiable tensor functions: one code for both uses.

Why a separate module: the tracker runs these functions under ``torch.no_grad()`` to fit its
filter online, and the meta-training library (``meta_tracker_ros.training``) runs the very same
functions with gradients on, unrolled, to learn the solver's constants (Meta-Tracker's learned
step sizes, Retina-MAML's kernel-wise learning rates, LTAO's training through the ridge
template). Keeping one implementation means training and tracking cannot drift apart.

Everything the solver needs besides the features is a :class:`SolverParams`: the ridge and
refinement regularisers, a step multiplier per initialisation iteration and per update
iteration, a step multiplier per feature channel, and the label and spatial-weight functions of
the distance from the target centre. :meth:`SolverParams.handset` gives today's hand-set values
(the state of the tracker before meta-training); a learned file replaces them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

# Label / weight functions are tabulated over the distance from the target centre divided by
# sqrt(target area in cells), in bins of this width, linearly interpolated (last bin beyond).
DIST_BIN = 0.05
DIST_BINS = 80


@dataclass
class SolverParams:
    """Constants of the ridge init + steepest-descent solver (tensors; learnable or fixed).

    Positive quantities are stored as logs so a gradient step can never make them negative.
    ``label_bins`` / ``log_weight_bins`` are ``None`` for the hand-set Gaussian label and unit
    spatial weights (computed exactly rather than tabulated).
    """

    log_ridge_reg: torch.Tensor  # () lambda of the ridge init, relative to mean patch energy
    log_reg: torch.Tensor  # () lambda of the refinement, relative to mean feature energy
    log_init_steps: torch.Tensor  # (K,) step multiplier per initialisation iteration
    log_update_steps: torch.Tensor  # (U,) step multiplier per online-update iteration
    log_channel_steps: torch.Tensor  # (C,) step multiplier per feature channel
    label_sigma: float  # sigma of the reference Gaussian (x sqrt(area)); fixes the fg region
    hinge_threshold: float  # reference Gaussian above this: target cells (regression)
    label_bins: torch.Tensor | None = None  # (DIST_BINS,) label value per distance bin
    log_weight_bins: torch.Tensor | None = None  # (DIST_BINS,) log spatial weight per bin
    extra: dict = field(default_factory=dict)

    @classmethod
    def handset(
        cls,
        channels: int,
        ridge_reg: float,
        reg: float,
        init_steps: int,
        update_steps: int,
        step_size: float,
        label_sigma: float,
        hinge_threshold: float,
        device: torch.device | str = "cpu",
    ) -> SolverParams:
        """Today's hand-set solver: fixed regularisers, one scalar step, Gaussian labels."""
        t = dict(dtype=torch.float32, device=device)
        ls = math.log(max(step_size, 1e-12))
        return cls(
            log_ridge_reg=torch.tensor(math.log(max(ridge_reg, 1e-12)), **t),
            log_reg=torch.tensor(math.log(max(reg, 1e-12)), **t),
            log_init_steps=torch.full((max(init_steps, 0),), ls, **t),
            log_update_steps=torch.full((max(update_steps, 1),), ls, **t),
            log_channel_steps=torch.zeros(channels, **t),
            label_sigma=float(label_sigma),
            hinge_threshold=float(hinge_threshold),
        )

    def tabulated(self) -> SolverParams:
        """The same solver with the label / weight functions as (learnable) bin tables."""
        d = torch.arange(DIST_BINS, dtype=torch.float32, device=self.log_reg.device) * DIST_BIN
        labels = torch.exp(-0.5 * d.pow(2) / max(self.label_sigma, 1e-3) ** 2)
        return SolverParams(
            log_ridge_reg=self.log_ridge_reg,
            log_reg=self.log_reg,
            log_init_steps=self.log_init_steps,
            log_update_steps=self.log_update_steps,
            log_channel_steps=self.log_channel_steps,
            label_sigma=self.label_sigma,
            hinge_threshold=self.hinge_threshold,
            label_bins=labels,
            log_weight_bins=torch.zeros(DIST_BINS, dtype=torch.float32, device=labels.device),
        )

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensors by name (for saving, optimisers and DDP)."""
        out = {
            "log_ridge_reg": self.log_ridge_reg,
            "log_reg": self.log_reg,
            "log_init_steps": self.log_init_steps,
            "log_update_steps": self.log_update_steps,
            "log_channel_steps": self.log_channel_steps,
        }
        if self.label_bins is not None:
            out["label_bins"] = self.label_bins
        if self.log_weight_bins is not None:
            out["log_weight_bins"] = self.log_weight_bins
        return out

    @property
    def init_steps(self) -> int:
        return int(self.log_init_steps.numel())

    def update_step(self, i: int) -> torch.Tensor:
        """Multiplier of online-update iteration ``i`` (the last one repeats beyond the table)."""
        n = self.log_update_steps.numel()
        return self.log_update_steps[min(i, n - 1)].exp()


# ---------------------------------------------------------------------------- labels
def _interp(table: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of a distance table at distances ``d`` (in bin units)."""
    idx = (d / DIST_BIN).clamp(0, table.numel() - 1)
    i0 = idx.floor().long().clamp(max=table.numel() - 2)
    frac = idx - i0.to(idx.dtype)
    return table[i0] * (1 - frac) + table[i0 + 1] * frac


def label_maps(
    params: SolverParams,
    shape: tuple[int, int],
    centers: torch.Tensor,
    dims: tuple[float, float],
) -> torch.Tensor:
    """(N, 3, H, W) training targets for samples with the target at ``centers`` (N, 2) cells.

    Channels: the regression label ``y``, the target-cell mask ``fg`` (cells where the reference
    Gaussian exceeds the hinge threshold; everywhere else only positive scores are penalised)
    and the spatial weight of each cell's residual. ``dims`` is the target (h, w) in cells.
    """
    h, w = shape
    dev = centers.device
    rows = torch.arange(h, dtype=torch.float32, device=dev).view(1, h, 1)
    cols = torch.arange(w, dtype=torch.float32, device=dev).view(1, 1, w)
    dr = rows - centers[:, 0].view(-1, 1, 1)
    dc = cols - centers[:, 1].view(-1, 1, 1)
    size = math.sqrt(max(dims[0] * dims[1], 1e-6))
    sigma = max(params.label_sigma * size, 1e-3)
    gauss = torch.exp(-0.5 * (dr.pow(2) + dc.pow(2)) / sigma**2)
    fg = (gauss > params.hinge_threshold).to(torch.float32)
    tabulated = params.label_bins is not None or params.log_weight_bins is not None
    dist = torch.sqrt(dr.pow(2) + dc.pow(2) + 1e-12) / size if tabulated else None
    y = gauss if params.label_bins is None else _interp(params.label_bins, dist)
    if params.log_weight_bins is None:
        wt = torch.ones_like(gauss)
    else:
        wt = _interp(params.log_weight_bins, dist).exp()
    return torch.stack([y * fg, fg, wt], dim=1)


# ---------------------------------------------------------------------------- ridge init
def ridge_dual(a: torch.Tensor, y: torch.Tensor, lam: float | torch.Tensor) -> torch.Tensor:
    """Ridge regression ``argmin_w ||A w - y||^2 + lam ||w||^2`` in the dual form.

    ``w = A^T (A A^T + lam I)^-1 y`` (push-through identity) costs O(N^2 D) for N samples of
    dimension D, which is what we want for a handful of pooled patches with D in the thousands.
    """
    n = a.shape[0]
    gram = a @ a.T + lam * torch.eye(n, dtype=a.dtype, device=a.device)
    alpha = torch.linalg.solve(gram, y.reshape(n, 1).to(a.dtype))
    return (a.T @ alpha).reshape(-1)


def patches_at(x: torch.Tensor, coords: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """(P, C*kh*kw) bilinear patches of (1, C, H, W) features centred on fractional cells.

    Sampling at the exact target centre matters: rounding it to a whole cell biases the ridge
    filter, and with it every later peak, by up to half a cell.
    """
    h, w = x.shape[-2:]
    dev = x.device
    oy = torch.arange(kh, dtype=torch.float32, device=dev) - kh // 2
    ox = torch.arange(kw, dtype=torch.float32, device=dev) - kw // 2
    rows = coords[:, 0].view(-1, 1, 1) + oy.view(1, -1, 1)  # (P, kh, 1)
    cols = coords[:, 1].view(-1, 1, 1) + ox.view(1, 1, -1)  # (P, 1, kw)
    gy = ((2.0 * rows + 1.0) / h - 1.0).expand(-1, kh, kw)
    gx = ((2.0 * cols + 1.0) / w - 1.0).expand(-1, kh, kw)
    grid = torch.stack([gx, gy], dim=-1).reshape(1, -1, kw, 2)  # (1, P*kh, kw, 2)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    p = coords.shape[0]
    return out.reshape(x.shape[1], p, kh, kw).permute(1, 0, 2, 3).reshape(p, -1)


def ring_coords(
    center: tuple[float, float], target_cells: tuple[float, float], hw: tuple[int, int], n: int
) -> torch.Tensor:
    """(1 + n, 2) cells: the target centre, then ``n`` background centres on a ring around it."""
    r0, c0 = float(center[0]), float(center[1])
    coords = [(r0, c0)]
    for i in range(max(0, n)):
        ang = 2.0 * math.pi * i / max(n, 1)
        r = min(max(r0 + math.sin(ang) * target_cells[0], 0.0), hw[0] - 1.0)
        c = min(max(c0 + math.cos(ang) * target_cells[1], 0.0), hw[1] - 1.0)
        coords.append((r, c))
    return torch.tensor(coords, dtype=torch.float32)


def ridge_filter(
    x: torch.Tensor,
    center: tuple[float, float],
    target_cells: tuple[float, float],
    kh: int,
    kw: int,
    negatives: int,
    params: SolverParams,
) -> torch.Tensor:
    """(1, C, kh, kw) closed-form filter: target patch -> 1, ring of background patches -> 0.

    Learning to Track Any Object, eq. 1-3 (its best template variant), on sample 0 only.
    """
    coords = ring_coords(center, target_cells, tuple(x.shape[-2:]), negatives).to(x.device)
    patches = patches_at(x, coords, kh, kw)
    y = torch.zeros(coords.shape[0], device=x.device)
    y[0] = 1.0
    lam = params.log_ridge_reg.exp() * patches.pow(2).sum(1).mean()
    wvec = ridge_dual(patches, y, lam.clamp(min=1e-6))
    return wvec.reshape(1, x.shape[1], kh, kw)


# ---------------------------------------------------------------------------- Fourier domain
def smooth_length(n: int) -> int:
    """Smallest length >= ``n`` whose prime factors are all 2, 3, 5 or 7.

    Why: FFT libraries are fast on such lengths and several times slower on a prime (41, from
    a 32-cell map and a 9-cell filter: 2.1 ms against 0.35 ms for the 64-channel spectra of one
    frame on one CPU thread). Any length from ``H + k`` up gives the same correlation.
    """
    m = max(int(n), 1)
    while True:
        r = m
        for p in (2, 3, 5, 7):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def fft_size(hw: tuple[int, int], kernel: tuple[int, int]) -> tuple[int, int]:
    """Padded size that makes circular correlation equal the 'same'-padded linear one.

    At least ``H + kh`` by ``W + kw`` (no wrap-around within the filter's reach), rounded up
    to a length the FFT handles fast (:func:`smooth_length`).
    """
    return (
        smooth_length(int(hw[0]) + int(kernel[0])),
        smooth_length(int(hw[1]) + int(kernel[1])),
    )


def spectra(x: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """Zero-padded 2-D spectra of (N, C, H, W) features (see :func:`fft_size`)."""
    return torch.fft.rfft2(x, s=fft_size(tuple(x.shape[-2:]), kernel))


def kernel_spectrum(w: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Spectrum of a (1, C, kh, kw) kernel placed with its centre at the origin."""
    ph, pw = w.shape[2] // 2, w.shape[3] // 2
    big = F.pad(w, (0, size[1] - w.shape[3], 0, size[0] - w.shape[2]))
    return torch.fft.rfft2(torch.roll(big, shifts=(-ph, -pw), dims=(2, 3)))


def _uncirc(g: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    kh, kw = kernel
    return torch.roll(g, shifts=(kh // 2, kw // 2), dims=(2, 3))[:, :, :kh, :kw]


def scores_from_spectra(
    xf: torch.Tensor, w: torch.Tensor, hw: tuple[int, int], wf: torch.Tensor | None = None
) -> torch.Tensor:
    """(N, 1, H, W) scores of a (1, C, kh, kw) filter from :func:`spectra` output."""
    size = fft_size(hw, tuple(w.shape[-2:]))
    if wf is None:
        wf = kernel_spectrum(w, size).conj()
    sf = (xf * wf).sum(dim=1, keepdim=True)
    return torch.fft.irfft2(sf, s=size)[:, :, : hw[0], : hw[1]]


def mean_energy(xf: torch.Tensor, weights: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Weighted mean per-channel energy of the samples behind spectra ``xf`` (Parseval)."""
    cw = torch.full((xf.shape[-1],), 2.0, device=xf.device)
    cw[0] = 1.0
    if size[1] % 2 == 0:
        cw[-1] = 1.0
    power = (xf.real.pow(2) + xf.imag.pow(2)) * cw
    energy = (power.sum(dim=(1, 2, 3)) * weights).sum() / (size[0] * size[1])
    return energy / xf.shape[1]


def _sum_products(a: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor:
    """``(a * b).sum(dim, keepdim=True)`` for complex spectra, ``b`` broadcast along ``dim``.

    Why not the one-liner: on a CPU the broadcast product materialises a full-size complex
    temporary (21 MB for a 50-sample memory) before reducing it, and this reduction is most of an
    online filter refinement. Accumulating slice by slice in place reads ``a`` once and writes
    nothing that large (about 30 % less time on one thread). With autograd the one-liner is kept:
    an in-place chain of dozens of nodes would cost more than it saves in training.
    """
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return (a * b).sum(dim=dim, keepdim=True)
    n = a.shape[dim]
    if b.shape[dim] == 1:
        b = b.expand_as(a)

    def part(t: torch.Tensor, i: int) -> torch.Tensor:
        return t.narrow(dim, i, 1)

    acc = part(a, 0) * part(b, 0)
    for i in range(1, n):
        acc.addcmul_(part(a, i), part(b, i))
    return acc


def sample_energy(x: torch.Tensor) -> torch.Tensor:
    """(N,) energy ``sum x^2`` of each (C, H, W) sample, taken on the features themselves.

    Equal (Parseval) to what :func:`mean_energy` recovers from the padded spectra, but one
    sample at a time as it enters the memory instead of a pass over every stored spectrum at
    each refinement (a third of a refinement's time on a CPU).
    """
    return x.pow(2).sum(dim=(1, 2, 3))


def steepest_descent(
    w: torch.Tensor,
    xf: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    multipliers: list[torch.Tensor],
    params: SolverParams,
    energy: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Steepest descent with exact Gauss-Newton line search; returns every iterate after ``w``.

    See :func:`descend`, which also takes and returns the samples' scores.
    """
    return descend(w, xf, targets, weights, multipliers, params, energy)[0]


def descend(
    w: torch.Tensor,
    xf: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    multipliers: list[torch.Tensor],
    params: SolverParams,
    energy: torch.Tensor | None = None,
    scores: torch.Tensor | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Steepest descent with exact Gauss-Newton line search: (iterates after ``w``, scores).

    Loss: ``sum_j weights_j ||v * r_j||^2 + lam ||w||^2`` with ``r = s - y`` on target cells
    and ``max(s, 0)`` elsewhere (DiMP's hinge), ``v`` the spatial weight of ``targets`` (see
    :func:`label_maps`) and ``lam = reg x mean feature energy``. The direction is the gradient
    times the per-channel step multipliers; the step is the exact minimiser of the Gauss-Newton
    model along it, times that iteration's multiplier.

    The scores are linear in the filter, so after a step ``s(w - t d) = s(w) - t s(d)``: each
    iteration after the first reuses the previous one's ``s(d)`` instead of correlating all
    samples with the new filter again (two passes over the spectra per iteration, not three).
    ``energy`` is the samples' :func:`sample_energy` when the caller keeps it (the tracker's
    memory does); without it the energy is recovered from the spectra.

    ``scores``: the samples' (N, 1, H, W) score maps under ``w`` when the caller knows them
    (the tracker scored each sample when it tracked that frame, and every refinement returns
    the scores of its final filter): the first correlation pass over the spectra is then
    skipped, a third of a one-step refinement. The second value returned is the samples'
    scores under the last iterate.
    """
    h, w_ = targets.shape[-2:]
    kernel = (w.shape[2], w.shape[3])
    size = fft_size((h, w_), kernel)
    sw = weights.view(-1, 1, 1, 1)
    if energy is None:
        mean = mean_energy(xf, weights, size)
    else:
        mean = (energy.to(weights.dtype) * weights).sum() / xf.shape[1]
    lam = params.log_reg.exp() * mean.clamp(min=1e-6)
    y, fg, v = targets[:, 0:1], targets[:, 1:2] > 0.5, targets[:, 2:3]
    v2 = v * v
    chan = params.log_channel_steps.exp().view(1, -1, 1, 1)

    def apply(kernel_: torch.Tensor) -> torch.Tensor:
        sf = _sum_products(xf, kernel_spectrum(kernel_, size).conj(), dim=1)
        return torch.fft.irfft2(sf, s=size)[:, :, :h, :w_]

    out = []
    s = apply(w) if scores is None else scores
    for mult in multipliers:
        act = (fg | (s > 0)).to(s.dtype)
        r = torch.where(fg, s - y, s) * act
        rf = torch.fft.rfft2(r * v2 * sw, s=size)
        gf = _sum_products(xf, rf.conj(), dim=0)
        g = _uncirc(torch.fft.irfft2(gf, s=size), kernel) + lam * w
        d = g * chan
        sd = apply(d)
        jd = sd * act
        den = (sw * v2 * jd.pow(2)).sum() + lam * d.pow(2).sum()
        alpha = (g * d).sum() / den.clamp(min=1e-12)
        step = mult * alpha
        w = w - step * d
        s = s - step * sd
        out.append(w)
    return out, s


def hinge_loss(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean DiMP hinge-regression loss of score maps against :func:`label_maps` targets."""
    y, fg = targets[:, 0:1], targets[:, 1:2] > 0.5
    r = torch.where(fg, scores - y, F.relu(scores))
    return r.pow(2).mean()
