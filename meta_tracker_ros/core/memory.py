"""Bounded memory of training samples (features + labels + weights) for the online classifier.

Why: refitting the filter on recent confident frames lets it follow appearance change, but a
memory that only holds recent frames drifts onto whatever it tracked last. So the first frame's
samples are kept permanently with a floor on their total weight, new samples enter with a weight
that decays geometrically with age (DiMP's ``update_sample_weights``), the lowest-weight
non-initial sample is replaced when full, and the caller only writes confident frames.
"""

from __future__ import annotations

import torch


class SampleMemory:
    """Preallocated ``(size, C, H, W)`` features and ``(size, 1, H, W)`` labels with weights.

    Each sample may carry a scalar ``energy`` (the classifier's :func:`sample_energy` of its
    features, kept so a refinement need not recompute it from every stored spectrum), and its
    score map under the current filter (``scores``, valid only while every stored sample has
    one for that filter: :meth:`scores_now`), so a refinement can skip correlating them again.
    """

    def __init__(self, size: int, init_weight_floor: float) -> None:
        self.size = int(size)
        self.init_weight_floor = float(init_weight_floor)
        self.features: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self.weights: torch.Tensor | None = None
        self.energy: torch.Tensor | None = None
        self.scores: torch.Tensor | None = None
        self._scores_valid = False
        self.count = 0
        self.num_init = 0

    def initialize(
        self, features: torch.Tensor, labels: torch.Tensor, energy: torch.Tensor | None = None
    ) -> None:
        """Store the first frame's samples (augmentations), equally weighted and permanent."""
        n = features.shape[0]
        if n >= self.size:
            raise ValueError(f"memory size {self.size} must exceed the {n} first-frame samples")
        self.features = features.new_zeros((self.size, *features.shape[1:]))
        self.labels = labels.new_zeros((self.size, *labels.shape[1:]))
        self.weights = torch.zeros(self.size, device=labels.device)
        self.energy = None
        if energy is not None:
            self.energy = torch.zeros(self.size, device=labels.device)
            self.energy[:n] = energy
        self.features[:n] = features
        self.labels[:n] = labels
        self.scores = labels.new_zeros((self.size, 1, *labels.shape[2:]))
        self._scores_valid = False  # not scored by the filter yet
        self.weights[:n] = 1.0 / n
        self.count = self.num_init = n

    def add(
        self,
        feature: torch.Tensor,
        label: torch.Tensor,
        learning_rate: float,
        energy: torch.Tensor | None = None,
        score: torch.Tensor | None = None,
    ) -> None:
        """Insert one sample with weight ``learning_rate`` of the total; older ones decay.

        ``energy`` is required when the memory was initialised with energies. ``score``: the
        sample's (1, 1, H, W) score map under the current filter; without it the stored scores
        stop being valid until :meth:`set_scores`.
        """
        assert self.features is not None and self.labels is not None and self.weights is not None
        if self.count < self.size:
            slot = self.count
            self.count += 1
        else:
            slot = self.num_init + int(torch.argmin(self.weights[self.num_init :]))
        self.weights[: self.count] *= 1.0 - learning_rate
        self.weights[slot] = learning_rate
        self.features[slot] = feature[0]
        self.labels[slot] = label[0]
        if self.energy is not None:
            if energy is None:
                raise ValueError("this memory keeps sample energies: pass the new sample's")
            self.energy[slot] = energy.reshape(-1)[0]
        if score is None or self.scores is None:
            self._scores_valid = False
        else:
            self.scores[slot] = score[0]
        init_sum = float(self.weights[: self.num_init].sum())
        rest = float(self.weights[self.num_init : self.count].sum())
        if init_sum < self.init_weight_floor and rest > 0:
            self.weights[: self.num_init] *= self.init_weight_floor / max(init_sum, 1e-12)
            self.weights[self.num_init : self.count] *= (1.0 - self.init_weight_floor) / rest
        self.weights[: self.count] /= self.weights[: self.count].sum()

    def samples(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The filled part: features, labels and weights summing to 1."""
        assert self.features is not None and self.labels is not None and self.weights is not None
        n = self.count
        return self.features[:n], self.labels[:n], self.weights[:n]

    def scores_now(self) -> torch.Tensor | None:
        """The filled part's score maps when valid for the current filter, else None."""
        if not self._scores_valid or self.scores is None:
            return None
        return self.scores[: self.count]

    def set_scores(self, scores: torch.Tensor | None) -> None:
        """Record the filled part's scores under a new filter (None: forget them)."""
        if scores is None or self.scores is None:
            self._scores_valid = False
            return
        self.scores[: self.count] = scores
        self._scores_valid = True

    def energies(self) -> torch.Tensor | None:
        """The filled part's energies (``None`` when the memory keeps none)."""
        return None if self.energy is None else self.energy[: self.count]
