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
    features, kept so a refinement need not recompute it from every stored spectrum).
    """

    def __init__(self, size: int, init_weight_floor: float) -> None:
        self.size = int(size)
        self.init_weight_floor = float(init_weight_floor)
        self.features: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self.weights: torch.Tensor | None = None
        self.energy: torch.Tensor | None = None
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
        self.weights[:n] = 1.0 / n
        self.count = self.num_init = n

    def add(
        self,
        feature: torch.Tensor,
        label: torch.Tensor,
        learning_rate: float,
        energy: torch.Tensor | None = None,
    ) -> None:
        """Insert one sample with weight ``learning_rate`` of the total; older ones decay.

        ``energy`` is required when the memory was initialised with energies.
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

    def energies(self) -> torch.Tensor | None:
        """The filled part's energies (``None`` when the memory keeps none)."""
        return None if self.energy is None else self.energy[: self.count]
