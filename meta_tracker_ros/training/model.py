"""The learnable classifier: the tracker's projection and solver with their constants as
parameters, run on an episode exactly as the tracker runs them online.

The forward pass is the tracker's own initialisation (``core.heads.classifier`` and
``core.heads.solver`` functions, not copies): level normalisation and projection of the
first-frame augmentations, labels, the closed-form ridge filter on sample 0 and the
initialisation iterations; then, for episodes with a memory, the online-update iterations on
first-frame plus memory samples. Every iterate scores the test frames and the DiMP hinge loss
of each is part of the outer loss, so gradients reach every step multiplier, the regularisers,
the label / weight tables and the projection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from meta_tracker_ros.core.config import TrackerConfig
from meta_tracker_ros.core.heads import solver as S
from meta_tracker_ros.core.heads.classifier import (
    FeatureProjector,
    concat_levels,
    filter_size,
    handset_solver,
    level_scales,
    project,
    unit_energy_scale,
)
from meta_tracker_ros.core.heads.learned import LearnedClassifier
from meta_tracker_ros.training.episodes import Episode, View

# Outer-loss weights: the ridge filter alone, the mean of intermediate iterates, the last
# initialisation iterate, and the online-update iterates (DiMP supervises every iterate).
W_RIDGE, W_INTER, W_FINAL, W_UPDATE = 0.25, 0.5, 1.0, 1.0


@dataclass
class EpisodeResult:
    loss: torch.Tensor
    final_loss: float  # hinge loss of the last iterate on the test frames
    hits: int  # test frames whose score peak is within half a target size of the truth
    total: int


class ClassifierModel(nn.Module):
    """Learnable projection and solver constants, initialised to the hand-set tracker.

    ``projection``: "learned" (a 1x1 projection, initialised from a PCA of training features)
    or "pca" (the tracker's per-target first-frame PCA, nothing learned).
    """

    def __init__(
        self,
        cfg: TrackerConfig,
        channels: int,
        init_steps: int,
        update_steps: int,
        projection: str = "learned",
        proj_init: tuple[torch.Tensor, torch.Tensor] | None = None,
        learn_solver: bool = True,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.classifier
        self.levels = list(c.feature_levels)
        hand = handset_solver(c, update_steps, c.proj_dim, torch.device("cpu"))
        hand.log_init_steps = torch.full((init_steps,), math.log(max(c.step_size, 1e-12)))
        # The outer loss scores test frames against the fixed hand-set label (peak 1 at the
        # target): were it the learned label, shrinking the label would shrink the loss.
        self.reference = hand
        table = hand.tabulated()
        self.label_sigma, self.hinge_threshold = table.label_sigma, table.hinge_threshold
        self.solver_params = nn.ParameterDict(
            {
                k: nn.Parameter(v.clone(), requires_grad=learn_solver)
                for k, v in table.tensors().items()
            }
        )
        self.projection = projection
        if projection == "learned":
            if proj_init is None:
                raise ValueError("a learned projection needs an initial (weight, bias)")
            self.proj_weight = nn.Parameter(proj_init[0].clone())
            self.proj_bias = nn.Parameter(proj_init[1].clone())
        elif projection != "pca":
            raise ValueError(f"projection must be 'learned' or 'pca', not {projection!r}")

    # ------------------------------------------------------------------ the learned constants
    def solver(self) -> S.SolverParams:
        p = self.solver_params
        return S.SolverParams(
            log_ridge_reg=p["log_ridge_reg"],
            log_reg=p["log_reg"],
            log_init_steps=p["log_init_steps"],
            log_update_steps=p["log_update_steps"],
            log_channel_steps=p["log_channel_steps"],
            label_sigma=self.label_sigma,
            hinge_threshold=self.hinge_threshold,
            label_bins=p["label_bins"],
            log_weight_bins=p["log_weight_bins"],
        )

    def export(self, meta: dict) -> LearnedClassifier:
        """The tensors as the tracker loads them (projection None for the PCA variant)."""
        weight = self.proj_weight.detach() if self.projection == "learned" else None
        bias = self.proj_bias.detach() if self.projection == "learned" else None
        solver = self.solver()
        detached = S.SolverParams(
            **{k: v.detach() for k, v in solver.tensors().items()},
            label_sigma=solver.label_sigma,
            hinge_threshold=solver.hinge_threshold,
        )
        return LearnedClassifier(detached, weight, bias, dict(meta))

    # ------------------------------------------------------------------ features
    def _projector(self, init: View):
        """Fit on the first-frame view like TargetTrack.initialize; returns a feature map fn."""
        scale = level_scales(init.feats, self.levels)
        x = concat_levels(init.feats, self.levels, scale)
        if self.projection == "learned":
            weight, bias = self.proj_weight, self.proj_bias
        else:
            fp = FeatureProjector(self.levels, self.cfg.classifier.proj_dim)
            fp.fit(init.feats)
            weight, bias = fp.weight, fp.bias
        k = unit_energy_scale(project(x, weight, bias))

        def fmap(view: View) -> torch.Tensor:
            return project(concat_levels(view.feats, self.levels, scale), weight, bias) * k

        return fmap

    # ------------------------------------------------------------------ one episode
    def initialize(self, init: View):
        """The tracker's initialisation on a first-frame view, with gradients.

        Returns the feature map function (fixed normalisation, as the tracker freezes it after
        frame 1), the projected first-frame samples, their targets, the filter size and every
        iterate (the ridge filter first).
        """
        params = self.solver()
        fmap = self._projector(init)
        x = fmap(init)
        shape = tuple(x.shape[-2:])
        dims = init.dims[0]
        kh, kw = filter_size(self.cfg.classifier, dims)
        targets = S.label_maps(params, shape, init.centers, dims)
        n = x.shape[0]
        weights = torch.full((n,), 1.0 / n)
        w0 = S.ridge_filter(
            x[0:1],
            tuple(init.centers[0].tolist()),
            dims,
            kh,
            kw,
            self.cfg.classifier.ridge_negatives,
            params,
        )
        xf = S.spectra(x, (kh, kw))
        steps = [m.exp() for m in params.log_init_steps]
        iterates = [w0, *S.steepest_descent(w0, xf, targets, weights, steps, params)]
        return fmap, x, targets, weights, (kh, kw), iterates

    def forward(self, ep: Episode) -> EpisodeResult:
        params = self.solver()
        fmap, x, targets, weights, (kh, kw), iterates = self.initialize(ep.init)
        shape = tuple(x.shape[-2:])
        xt = fmap(ep.test)
        test_targets = torch.cat(
            [
                S.label_maps(self.reference, shape, ep.test.centers[i : i + 1], ep.test.dims[i])
                for i in range(xt.shape[0])
            ]
        )

        def test_loss(w: torch.Tensor) -> torch.Tensor:
            s = F.conv2d(xt, w, padding=(kh // 2, kw // 2))
            return S.hinge_loss(s, test_targets)

        losses = [test_loss(w) for w in iterates]
        loss = W_RIDGE * losses[0] + W_FINAL * losses[-1]
        if len(losses) > 2:
            loss = loss + W_INTER * torch.stack(losses[1:-1]).mean()
        final = iterates[-1]
        if ep.memory is not None:
            xm = fmap(ep.memory)
            mt = torch.cat(
                [
                    S.label_maps(params, shape, ep.memory.centers[i : i + 1], ep.memory.dims[i])
                    for i in range(xm.shape[0])
                ]
            )
            m = xm.shape[0]
            wts = torch.cat(
                [weights * (1 - ep.memory_weight), torch.full((m,), ep.memory_weight / m)]
            )
            mult = [params.update_step(i) for i in range(params.log_update_steps.numel())]
            upd = S.steepest_descent(
                final,
                S.spectra(torch.cat([x, xm]), (kh, kw)),
                torch.cat([targets, mt]),
                wts,
                mult,
                params,
            )
            loss = loss + W_UPDATE * torch.stack([test_loss(w) for w in upd]).mean()
            final = upd[-1]
            losses.append(test_loss(final))
        with torch.no_grad():
            s = F.conv2d(xt, final, padding=(kh // 2, kw // 2))[:, 0]
            flat = s.reshape(s.shape[0], -1).argmax(1)
            rows = (flat // s.shape[-1]).float()
            cols = (flat % s.shape[-1]).float()
            hits = 0
            for i in range(s.shape[0]):
                d = math.hypot(
                    float(rows[i] - ep.test.centers[i, 0]), float(cols[i] - ep.test.centers[i, 1])
                )
                size = math.sqrt(ep.test.dims[i][0] * ep.test.dims[i][1])
                hits += int(d <= 0.5 * size)
        return EpisodeResult(loss, float(losses[-1].detach()), hits, int(s.shape[0]))
