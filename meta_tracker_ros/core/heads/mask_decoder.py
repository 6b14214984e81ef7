"""Learned mask decoder: refines the training-free head's per-target evidence into a mask.

Why this design (issue 9, notes 3.3 "LWL/RTS-lite" sized for a 2-core CPU): the per-target,
online part of the segmenter stays the training-free head of ``mask_head.py`` (colour
histograms, box prior, shape memory, D3S-style feature matching: fitted on the first frame from
the box or the given mask and updated from confident masks). What a fixed fusion of those cues
cannot do is learned offline here: weigh the cues against each other per pixel and per context
(colour is useless where the background shares it, the box prior misleads when the box lags),
and bring in what the cues lack (the backbone's stride-4/8/16 features, i.e. objectness).

Inputs, on the mask head's working window (long side ``work_size``):

* ``full`` (B, 9, H, W) at window resolution: the cue maps (``CUES``) and the window's colours;
  the shipped decoder (``RIDGE_CUES``) has a tenth channel, ``ridge``: the head's closed-form
  ridge discriminator of target against background on the hypercolumns (LTAO); a decoder
  trained with the classifier's score map instead (``SCORE_CUES``, RTS's instance branch) has
  ``score``: the target filter's response on the search crop, divided by the target's
  first-frame peak and resampled onto the window;
* ``feats`` (B, sum(channels), H/4, W/4): backbone levels sampled at the centre of every 4x4
  cell of the window.

Stage 1 runs at window stride 4 (32 x 32 for ``work_size`` 128): each backbone level is reduced
by a learned 1x1 conv, concatenated with the pooled cues and passed through a few 3x3 convs
(dilated for context); it predicts a coarse logit. Stage 2 at full window resolution adds a
small residual conv on [coarse logit, fused logit, colours], so boundaries follow the pixels.
No normalisation layers: tiny batches at training and a batch of one at tracking make
BatchNorm statistics meaningless, and frozen BatchNorm would be an identity here anyway.

The file format mirrors the learned classifier's (``learned.py``): one versioned ``torch.save``
with the tensors and what they were trained for; :meth:`MaskDecoderFile.check` names a
mismatch with the tracker's configuration. Version 2 adds the decoder's cue list to the file
(version 1 files, all without the score map, are still read); a version-1 reader refuses a
version-2 file by its version rather than failing on tensor shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from meta_tracker_ros.core.heads.weights_file import load_frozen, read_versioned, write_versioned

FORMAT = "meta_tracker_ros.mask_decoder"
VERSION = 2
READS = (1, 2)  # versions this code reads (1: no cue list in the body, always CUES)

# The file shipped inside the package (``mask.weights_path: ""`` with ``mask.learned: true``).
SHIPPED = Path(__file__).resolve().parents[1] / "weights" / "mask_decoder.pt"

# Full-resolution input channels, in order (MaskHead.decoder_inputs builds them). Logits are
# divided by LOGIT_SCALE so every channel is of order one.
CUES = ("color", "prior", "shape", "feature", "fused", "valid", "b", "g", "r")
# The same plus the classifier's score map (divided by the target's first-frame peak score,
# clipped to SCORE_RANGE): what a decoder trained with ``--score-map`` reads.
SCORE_CUES = (*CUES, "score")
# The same plus a ridge-regression discriminator (``ridge``, clipped to RIDGE_RANGE): a linear
# model of the target against its background on stride-4/8/16 hypercolumns, fitted in closed
# form on the first frame's mask label (LTAO); what a decoder trained with ``--ridge`` reads.
RIDGE_CUES = (*CUES, "ridge")
KNOWN_CUES = (CUES, SCORE_CUES, RIDGE_CUES)
RIDGE_RANGE = (-2.0, 2.0)
SCORE_RANGE = (-1.0, 2.0)
LOGIT_SCALE = 4.0
POOL = 4  # stage-1 stride in window pixels


class MaskDecoder(nn.Module):
    """Two-stage conv decoder (see the module docstring); a few tens of thousands of weights."""

    def __init__(
        self,
        channels: list[int],
        reduce: int = 8,
        width: int = 32,
        cues: tuple[str, ...] | list[str] = CUES,
    ) -> None:
        super().__init__()
        if tuple(cues) not in KNOWN_CUES:
            raise ValueError(f"unknown mask decoder cue list {list(cues)}; known: {KNOWN_CUES}")
        self.channels = list(channels)
        self.cues = tuple(cues)  # the channels of ``full``, in order
        self.reduce = nn.ModuleList(nn.Conv2d(c, reduce, 1) for c in channels)
        c_in = reduce * len(channels) + len(self.cues)
        self.coarse = nn.Sequential(
            nn.Conv2d(c_in, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=2, dilation=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=4, dilation=4),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 16, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 1, 1),
        )
        self.fine = nn.Sequential(
            nn.Conv2d(5, 8, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 1, 3, padding=1),
        )
        # Start as "the training-free head": output = fused logit (a useful init for few data).
        self.skip = nn.Parameter(torch.tensor([LOGIT_SCALE]))
        nn.init.zeros_(self.coarse[-1].weight)
        nn.init.zeros_(self.coarse[-1].bias)
        nn.init.zeros_(self.fine[-1].weight)
        nn.init.zeros_(self.fine[-1].bias)

    def forward(self, full: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) logits from ``full`` (B, len(cues), H, W) and ``feats`` (B, C, H/4, W/4).

        H and W must be multiples of ``POOL`` (the caller pads the window).
        """
        pooled = F.avg_pool2d(full, POOL)
        parts = [pooled]
        start = 0
        for conv, c in zip(self.reduce, self.channels, strict=True):
            parts.append(conv(feats[:, start : start + c]))
            start += c
        coarse = self.coarse(torch.cat(parts, dim=1))
        up = F.interpolate(coarse, size=full.shape[-2:], mode="bilinear", align_corners=False)
        fused = full[:, CUES.index("fused") : CUES.index("fused") + 1]
        rgb = full[:, CUES.index("b") : CUES.index("r") + 1]
        fine = self.fine(torch.cat([up, fused, rgb], dim=1))
        return self.skip * fused + up + fine


@dataclass
class MaskDecoderFile:
    """A trained decoder and the metadata it was trained with."""

    decoder: MaskDecoder
    meta: dict[str, Any]

    def check(
        self,
        backbone: str,
        levels: list[str],
        work_size: int,
        context: float,
        ridge_levels: list[str] | None = None,
        ridge_reg: float | None = None,
    ) -> None:
        """Raise ValueError naming the mismatch when this file does not fit the tracker.

        A decoder that reads the ridge map was trained on maps of one fit (``ridge_levels``,
        ``ridge_reg``); given here, they must match too.
        """
        want: dict[str, Any] = {
            "backbone": backbone,
            "levels": list(levels),
            "work_size": int(work_size),
            "context": float(context),
            "cues": list(self.decoder.cues),
        }
        if "ridge" in self.decoder.cues and ridge_levels is not None:
            want["ridge_levels"] = list(ridge_levels)
        if "ridge" in self.decoder.cues and ridge_reg is not None:
            want["ridge_reg"] = float(ridge_reg)
        for key, value in want.items():
            if self.meta.get(key) != value:
                raise ValueError(
                    f"mask decoder file {self.meta.get('path', '?')}: trained for {key}="
                    f"{self.meta.get(key)!r}, but the tracker is configured with {value!r} "
                    "(retrain with python -m meta_tracker_ros.training mask, or set "
                    "mask.learned: false for the training-free mask head)"
                )


def save_decoder(path: str | Path, decoder: MaskDecoder, meta: dict[str, Any]) -> None:
    """Write the file (tensors detached to CPU, metadata as plain values)."""
    body = {
        "channels": list(decoder.channels),
        "reduce": int(decoder.reduce[0].out_channels),
        "width": int(decoder.coarse[0].out_channels),
        "cues": list(decoder.cues),
        "tensors": {k: v.detach().cpu().clone() for k, v in decoder.state_dict().items()},
        "meta": meta,
    }
    write_versioned(path, FORMAT, VERSION, body)


def load_decoder(path: str | Path) -> MaskDecoderFile:
    """Read a file written by :func:`save_decoder`; ValueError for anything else."""
    data, meta = read_versioned(
        path,
        FORMAT,
        READS,
        "mask decoder file",
        "train one with python -m meta_tracker_ros.training mask, or set mask.learned: false",
    )
    cues = tuple(data.get("cues", CUES))  # version 1: always the plain cues
    if cues not in KNOWN_CUES:
        raise ValueError(f"{path}: unknown cue list {list(cues)}, this code knows {KNOWN_CUES}")
    decoder = MaskDecoder(list(data["channels"]), int(data["reduce"]), int(data["width"]), cues)
    return MaskDecoderFile(load_frozen(decoder, data["tensors"], path, "decoder"), meta)
