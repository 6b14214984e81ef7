"""Closed-form ridge init, Fourier-domain refinement and the sample memory of the tracking core."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from meta_tracker_ros.core.config import ClassifierConfig
from meta_tracker_ros.core.heads import solver as S
from meta_tracker_ros.core.heads.classifier import FilterClassifier, odd, ridge_dual
from meta_tracker_ros.core.memory import SampleMemory


def test_ridge_dual_matches_lstsq_and_normal_equations():
    rng = np.random.default_rng(0)
    for n, d in [(9, 40), (30, 12)]:  # fewer and more samples than dimensions
        a = rng.standard_normal((n, d))
        y = rng.standard_normal(n)
        lam = 0.3
        w = ridge_dual(torch.tensor(a), torch.tensor(y), lam).numpy()
        # Ridge as an augmented least-squares problem.
        a_aug = np.vstack([a, np.sqrt(lam) * np.eye(d)])
        y_aug = np.concatenate([y, np.zeros(d)])
        w_lstsq = np.linalg.lstsq(a_aug, y_aug, rcond=None)[0]
        w_normal = np.linalg.solve(a.T @ a + lam * np.eye(d), a.T @ y)
        np.testing.assert_allclose(w, w_lstsq, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(w, w_normal, rtol=1e-8, atol=1e-10)


def test_odd_kernel_sizes():
    assert odd(7.2, 1, 9) == 7
    assert odd(6.0, 1, 9) in (5, 7)
    assert odd(20.0, 1, 9) == 9
    assert odd(0.2, 1, 9) == 1


def _loss(clf: FilterClassifier, x, targets, weights):
    s = F.conv2d(x, clf.filter, padding=clf.padding)
    y, fg = targets[:, 0:1], targets[:, 1:2] > 0.5
    r = torch.where(fg, s - y, s.clamp(min=0))
    return float((weights.view(-1, 1, 1, 1) * r.pow(2)).sum())


def test_fourier_training_matches_convolution_and_reduces_loss():
    torch.manual_seed(0)
    cfg = ClassifierConfig(init_steps=0)
    clf = FilterClassifier(cfg, channels=6, device=torch.device("cpu"))
    x = torch.randn(5, 6, 15, 15)
    targets = clf.targets((15, 15), [(7.0, 7.0)] * 5, (5.0, 3.0))
    assert targets.shape == (5, 3, 15, 15)
    weights = torch.full((5,), 0.2)
    clf.initialize(x, targets, weights, (7.0, 7.0), (5.0, 3.0))
    assert clf.filter.shape == (1, 6, 5, 3)
    # The circular products on padded spectra equal the 'same'-padded correlation.
    size = clf.fft_size((15, 15))
    sf = (clf.spectra(x) * S.kernel_spectrum(clf.filter, size).conj()).sum(1, keepdim=True)
    s_fft = torch.fft.irfft2(sf, s=size)[:, :, :15, :15]
    torch.testing.assert_close(s_fft, clf.scores(x), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        clf.scores_from_spectra(clf.spectra(x), (15, 15)), clf.scores(x), atol=1e-4, rtol=1e-4
    )
    before = _loss(clf, x, targets, weights)
    clf.refine(clf.spectra(x), targets, weights, 10)
    after = _loss(clf, x, targets, weights)
    assert after < 0.95 * before


def test_solver_constants_come_from_the_solver_params():
    torch.manual_seed(1)
    cfg = ClassifierConfig(init_steps=3)
    x = torch.randn(3, 4, 11, 11)
    hand = FilterClassifier(cfg, 4, torch.device("cpu"))
    assert hand.params.init_steps == 3  # hand-set: the config's count and step size
    targets = hand.targets((11, 11), [(5.0, 5.0)] * 3, (3.0, 3.0))
    weights = torch.full((3,), 1 / 3)
    hand.initialize(x, targets, weights, (5.0, 5.0), (3.0, 3.0))
    # Zero step multipliers: the filter stays the closed-form ridge filter.
    frozen = S.SolverParams.handset(
        4, cfg.ridge_reg, cfg.reg, 3, 2, 0.0, cfg.label_sigma, cfg.hinge_threshold
    )
    frozen.log_init_steps = torch.full((3,), -torch.inf)
    clf = FilterClassifier(cfg, 4, torch.device("cpu"), frozen)
    clf.initialize(x, targets, weights, (5.0, 5.0), (3.0, 3.0))
    ridge = S.ridge_filter(x[0:1], (5.0, 5.0), (3.0, 3.0), 3, 3, cfg.ridge_negatives, frozen)
    torch.testing.assert_close(clf.filter, ridge)
    assert not torch.allclose(hand.filter, ridge)
    # Update iterations use their own multipliers (the last one repeats).
    frozen.log_update_steps = torch.tensor([0.0, -torch.inf])
    assert float(frozen.update_step(0)) == 1.0 and float(frozen.update_step(5)) == 0.0


def test_memory_keeps_first_frame_weight_floor_and_bounded_size():
    mem = SampleMemory(size=6, init_weight_floor=0.4)
    mem.initialize(torch.zeros(2, 3, 4, 4), torch.zeros(2, 1, 4, 4))
    for i in range(20):
        mem.add(torch.full((1, 3, 4, 4), float(i + 1)), torch.zeros(1, 1, 4, 4), 0.3)
    feats, _, weights = mem.samples()
    assert feats.shape[0] == 6
    assert abs(float(weights.sum()) - 1.0) < 1e-5
    assert float(weights[:2].sum()) >= 0.4 - 1e-5
    assert torch.all(feats[:2] == 0)  # first-frame samples never replaced
    assert float(feats[2:].max()) == 20.0  # the newest sample is in memory


def _reference_descent(w, x, targets, weights, mults, params):
    """The solver written out plainly: unpadded-prime FFT size, energy from the features,
    every score map recomputed from the filter, broadcast products (the pre-speed-up code)."""
    h, w_ = targets.shape[-2:]
    kh, kw = w.shape[2], w.shape[3]
    size = (h + kh, w_ + kw)
    xf = torch.fft.rfft2(x, s=size)
    sw = weights.view(-1, 1, 1, 1)
    lam = params.log_reg.exp() * (x.pow(2).sum(dim=(1, 2, 3)) * weights).sum() / x.shape[1]
    y, fg, v2 = targets[:, 0:1], targets[:, 1:2] > 0.5, targets[:, 2:3] ** 2
    chan = params.log_channel_steps.exp().view(1, -1, 1, 1)

    def apply(k):
        sf = (xf * S.kernel_spectrum(k, size).conj()).sum(dim=1, keepdim=True)
        return torch.fft.irfft2(sf, s=size)[:, :, :h, :w_]

    out = []
    for mult in mults:
        s = apply(w)
        act = (fg | (s > 0)).to(s.dtype)
        r = torch.where(fg, s - y, s) * act
        rf = torch.fft.rfft2(r * v2 * sw, s=size)
        g = torch.fft.irfft2((xf * rf.conj()).sum(dim=0, keepdim=True), s=size)
        g = torch.roll(g, shifts=(kh // 2, kw // 2), dims=(2, 3))[:, :, :kh, :kw] + lam * w
        d = g * chan
        jd = apply(d) * act
        den = (sw * v2 * jd.pow(2)).sum() + lam * d.pow(2).sum()
        w = w - mult * (g * d).sum() / den * d
        out.append(w)
    return out


def test_fast_solver_path_matches_the_plain_formulation():
    """Smooth FFT lengths, cached sample energies, reused score maps and in-place products
    (the online refinement's speed-ups) change nothing beyond float rounding."""
    torch.manual_seed(3)
    n, c, hw, kernel = 12, 16, 32, (9, 7)  # 32 + 9 = 41, a prime FFT length before
    assert S.fft_size((hw, hw), kernel) == (42, 40)  # not (41, 39)
    x = torch.randn(n, c, hw, hw)
    params = S.SolverParams.handset(c, 0.1, 0.01, 0, 3, 1.0, 0.2, 0.05).tabulated()
    params.log_channel_steps = torch.randn(c) * 0.3
    targets = S.label_maps(params, (hw, hw), torch.rand(n, 2) * 8 + 12, (6.0, 5.0))
    weights = torch.rand(n)
    weights /= weights.sum()
    w0 = torch.randn(1, c, *kernel) * 0.05
    mults = [torch.tensor(1.0), torch.tensor(0.7), torch.tensor(1.2)]
    want = _reference_descent(w0, x, targets, weights, mults, params)
    xf = S.spectra(x, kernel)
    with torch.no_grad():
        fast = S.steepest_descent(w0, xf, targets, weights, mults, params, S.sample_energy(x))
    # The autograd path (training): broadcast products, energy from the spectra.
    slow = S.steepest_descent(w0.clone().requires_grad_(), xf, targets, weights, mults, params)
    # The tracker's path: the samples' scores under w0 known (scored when tracked).
    with torch.no_grad():
        known = S.scores_from_spectra(xf, w0, (hw, hw))
        cached, after = S.descend(
            w0, xf, targets, weights, mults, params, S.sample_energy(x), known
        )
    for a, b, d, ref in zip(fast, slow, cached, want, strict=True):
        torch.testing.assert_close(a, ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b.detach(), ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(d, ref, rtol=1e-4, atol=1e-5)
    # ... and the scores it returns are the final filter's, ready for the next refinement.
    torch.testing.assert_close(
        after, S.scores_from_spectra(xf, want[-1], (hw, hw)), atol=1e-4, rtol=1e-4
    )
    assert not torch.allclose(want[-1], w0, atol=1e-3)  # the steps did move the filter


def test_memory_scores_are_valid_only_while_every_sample_has_one():
    mem = SampleMemory(size=4, init_weight_floor=0.4)
    first = torch.randn(2, 3, 5, 5)
    mem.initialize(first, torch.zeros(2, 1, 5, 5), S.sample_energy(first))
    assert mem.scores_now() is None  # the first frame's samples were never scored
    mem.set_scores(torch.ones(2, 1, 5, 5))
    f = torch.randn(1, 3, 5, 5)
    mem.add(f, torch.zeros(1, 1, 5, 5), 0.3, S.sample_energy(f), torch.full((1, 1, 5, 5), 2.0))
    got = mem.scores_now()
    assert got is not None and got.shape == (3, 1, 5, 5) and float(got[2].mean()) == 2.0
    mem.add(f, torch.zeros(1, 1, 5, 5), 0.3, S.sample_energy(f))  # no score: stale from now
    assert mem.scores_now() is None
    mem.set_scores(torch.zeros(4, 1, 5, 5))
    assert mem.scores_now() is not None


def test_memory_keeps_each_samples_energy_in_its_slot():
    mem = SampleMemory(size=4, init_weight_floor=0.4)
    first = torch.randn(2, 3, 5, 5)
    mem.initialize(first, torch.zeros(2, 1, 5, 5), S.sample_energy(first))
    with pytest.raises(ValueError, match="energ"):
        mem.add(first[:1], torch.zeros(1, 1, 5, 5), 0.3)
    for i in range(6):
        f = torch.randn(1, 3, 5, 5) * (i + 1)
        mem.add(f, torch.zeros(1, 1, 5, 5), 0.3, S.sample_energy(f))
    feats, _, _ = mem.samples()
    torch.testing.assert_close(mem.energies(), S.sample_energy(feats))
