"""Sequence loaders for the evaluation harness.

Every loader returns :class:`Sequence` objects with the same conventions, so the runner and the
metrics never need to know where a sequence came from:

* ``boxes`` is an ``(N, 4)`` float64 array of **0-based** ``(x, y, w, h)`` boxes, one row per frame,
  x, y the top-left corner in continuous pixel coordinates (pixel ``i`` covers ``[i, i + 1)``).
  A row of NaN means "target absent / not annotated"; the metrics skip such frames.
* frames and masks are file paths, decoded only when the runner asks for them (lazy), so loading
  a benchmark is cheap and memory stays flat.

Coordinate bases per source (what is subtracted from x and y when loading):

* ``shared`` (the project's ``../shared/data``): taken from ``manifest.json`` per sequence.
  OTB and UAV123 boxes are 1-based (MATLAB) → subtract 1, times the downscale factor when the
  frames were downscaled (``scaled x0.5`` → subtract 0.5: a 1-based source x maps to the 0-based
  source x - 1, and downscaling multiplies both by 0.5). TinyTLP does not state its base; its
  tooling is MATLAB like OTB's, so it is treated as 1-based too (the choice moves boxes by half a
  pixel in the downscaled frames, far below annotation noise). VOT polygons are treated as 0-based
  (the VOT toolkit's convention; the manifest allows ±1 px). ``groundtruth_from_mask.txt`` is
  0-based. Without a manifest, ``boxes/`` is assumed OTB-style 1-based and ``masks/`` 0-based.
* ``got10k``: 0-based as published; ``absence.label`` (when present) marks absent frames.
* ``lasot``: 1-based → subtract 1; frames flagged in ``full_occlusion.txt`` or
  ``out_of_view.txt`` are absent (NaN), as the target is not visible there.
* ``vot``: 0-based; 8-value polygons become their axis-aligned min/max box; VOT 2020+ mask
  regions (``m<x>,<y>,<w>,<h>,<rle>``) use the mask's bounding rectangle; ``0``/``nan`` rows
  are absent.
* ``davis``: boxes are the tight box of the mask (``x = xmin``, ``w = xmax - xmin + 1``, the same
  as the shared ``groundtruth_from_mask.txt``); an empty mask is an absent frame. Multi-object
  (palette) annotations use **object 1**: the tracker follows one target, and the union of
  separate objects is not one trackable thing. Single-object 0/255 masks use every non-zero pixel.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
FORMATS = ("auto", "shared", "got10k", "lasot", "vot", "davis")

# Canonical OTB attribute codes; the manifest's free-text tags are mapped onto them where possible.
OTB_CODES = ("IV", "SV", "OCC", "DEF", "MB", "FM", "IPR", "OPR", "OV", "BC", "LR")


@dataclass
class Sequence:
    """One evaluation sequence (see the module docstring for the conventions).

    Attributes:
        name: unique name, used in results and for ``--names``.
        frames: image paths in temporal order.
        boxes: ``(N, 4)`` 0-based xywh ground truth, NaN rows for absent frames.
        masks: per-frame mask paths (None where a frame has no mask), or None for box-only data.
        attributes: normalised attribute tags (OTB codes where possible).
        meta: provenance (source format, coordinate offset applied, warnings).
    """

    name: str
    frames: list[Path]
    boxes: np.ndarray
    masks: list[Path | None] | None = None
    attributes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def has_masks(self) -> bool:
        return self.masks is not None and any(m is not None for m in self.masks)

    def frame(self, index: int) -> np.ndarray:
        """Decode frame ``index`` as HxWx3 BGR uint8 (grayscale sources are expanded)."""
        image = cv2.imread(str(self.frames[index]), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"cannot decode image {self.frames[index]}")
        return image

    def mask(self, index: int) -> np.ndarray | None:
        """Ground-truth mask of frame ``index`` as HxW bool, or None where there is none."""
        if self.masks is None or self.masks[index] is None:
            return None
        return read_mask(self.masks[index])

    def truncated(self, max_frames: int | None) -> Sequence:
        """A copy limited to the first ``max_frames`` frames (for quick development runs)."""
        if max_frames is None or max_frames >= len(self):
            return self
        n = max(int(max_frames), 1)
        return Sequence(
            name=self.name,
            frames=self.frames[:n],
            boxes=self.boxes[:n].copy(),
            masks=None if self.masks is None else self.masks[:n],
            attributes=list(self.attributes),
            meta={**self.meta, "truncated_to": n},
        )

    def from_start(self, start: int, reverse: bool = False) -> Sequence:
        """The frames from ``start`` on (``reverse``: from ``start`` frames before the last, back
        to the first), named ``<name>@f<start>`` or ``<name>@b<start>``.

        Why: a validation set of three mask clips gives one score per clip from frame 0; tracking
        the same clips from several starts and in both directions gives more (correlated, but
        not identical) evidence for choosing between designs (``evaluation --starts``).
        """
        n = len(self)
        if not 0 <= start < n - 1:
            raise ValueError(f"{self.name}: start {start} leaves fewer than 2 frames of {n}")
        idx = list(range(n - 1 - start, -1, -1)) if reverse else list(range(start, n))
        return Sequence(
            name=f"{self.name}@{'b' if reverse else 'f'}{start}",
            frames=[self.frames[i] for i in idx],
            boxes=self.boxes[idx].copy(),
            masks=None if self.masks is None else [self.masks[i] for i in idx],
            attributes=list(self.attributes),
            meta={**self.meta, "start": start, "reverse": reverse},
        )


# --------------------------------------------------------------------------------------------
# Small parsing helpers


def read_mask(path: Path, object_id: int = 1) -> np.ndarray:
    """Read a mask PNG as HxW bool.

    Palette images (DAVIS 2017 style, pixel value = object index) give ``value == object_id``;
    anything else (DAVIS 2016 0/255 masks) gives ``value > 0``. PIL is used because OpenCV
    converts palette PNGs to colours and loses the object indices.
    """
    try:
        from PIL import Image

        with Image.open(path) as img:
            palette = img.mode == "P"
            arr = np.asarray(img)
    except ImportError:  # pragma: no cover - pillow ships with matplotlib
        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        palette = False
        if arr is None:
            raise OSError(f"cannot decode mask {path}") from None
    if palette:
        return arr == object_id
    if arr.ndim == 3:
        return np.any(arr > 0, axis=2)
    return arr > 0


def mask_to_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Tight 0-based box of a bool mask (``w = xmax - xmin + 1``), None when empty."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    return (float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1))


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (zero-padded names sort in order)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())


_SPLIT = re.compile(r"[,\s]+")


def read_rows(path: Path) -> list[list[str]]:
    """Split each line of a text file on commas / tabs / spaces (blank trailing lines dropped)."""
    lines = path.read_text().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return [[t for t in _SPLIT.split(line.strip()) if t] for line in lines]


def region_to_box(tokens: list[str]) -> list[float]:
    """One ground-truth line → ``[x, y, w, h]`` (NaN for absent).

    Accepts 4-value boxes, 8-value (or any even count ≥ 6) polygons → axis-aligned min/max box,
    VOT mask regions ``m<x>,<y>,<w>,<h>,...`` → the mask's bounding rectangle, and ``0`` / ``nan``
    / empty lines → absent.
    """
    nan = [float("nan")] * 4
    if not tokens:
        return nan
    if tokens[0].startswith("m"):
        vals = [float(tokens[0][1:]), *(float(t) for t in tokens[1:4])]
        return vals if len(vals) == 4 else nan
    vals = [float(t) for t in tokens]
    if len(vals) == 4:
        box = vals
    elif len(vals) >= 6 and len(vals) % 2 == 0:
        xs, ys = vals[0::2], vals[1::2]
        box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
    else:
        return nan
    if not all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
        return nan
    return box


def read_boxes(path: Path, offset: float = 0.0, columns: slice | None = None) -> np.ndarray:
    """Read a ground-truth file into an ``(N, 4)`` array, subtracting ``offset`` from x and y.

    ``columns`` selects the box columns first (e.g. ``slice(1, 5)`` for TLP's
    ``frame,x,y,w,h,lost`` layout).
    """
    rows = [region_to_box(r[columns] if columns else r) for r in read_rows(path)]
    boxes = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    boxes[:, :2] -= offset
    return boxes


def read_flags(path: Path) -> np.ndarray:
    """0/1 flags, one per frame, stored one per line or comma-separated on one line."""
    tokens = [t for row in read_rows(path) for t in row]
    return np.asarray([float(t) for t in tokens]) > 0


def align(seq_name: str, frames: list[Path], boxes: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Pad (NaN) or cut the GT to the frame count, recording a warning instead of failing.

    GOT-10k test and VOT-LT ship partial ground truth; padding with NaN keeps those usable (the
    missing frames are simply not scored).
    """
    n = len(frames)
    if len(boxes) == n:
        return boxes
    meta.setdefault("warnings", []).append(f"{len(boxes)} GT rows for {n} frames")
    print(
        f"warning: {seq_name}: {len(boxes)} ground-truth rows for {n} frames; "
        f"{'padding with absent frames' if len(boxes) < n else 'ignoring extra rows'}",
        file=sys.stderr,
    )
    out = np.full((n, 4), np.nan)
    m = min(n, len(boxes))
    out[:m] = boxes[:m]
    return out


def normalise_attributes(text: str | None) -> list[str]:
    """Turn a manifest attribute string into tags.

    ``"OTB(full seq): IV, SV"`` → ``["IV", "SV"]``;
    ``"observed: FM, SV(12x), OCC (trees), spray/BC, similar distractors (group)"`` →
    ``["FM", "SV", "OCC", "BC", "similar distractor"]``. The "OTB:" / "observed:" prefix is
    dropped (official and observed tags are pooled; the manifest keeps the distinction),
    parenthesised details are dropped, and an OTB code inside a phrase ("heavy DEF") becomes the
    code, so the per-attribute breakdown groups like with like.
    """
    if not text:
        return []
    body = text.split(":", 1)[1] if ":" in text else text
    tags: list[str] = []
    for raw in body.split(","):
        tag = re.sub(r"\(.*?\)", "", raw).strip()
        if not tag:
            continue
        codes = [w for w in re.split(r"[\s/]+", tag) if w in OTB_CODES]
        if codes:
            tag = codes[0]
        else:
            tag = tag.lower()
            if tag.endswith("distractors"):
                tag = tag[:-1]
        if tag not in tags:
            tags.append(tag)
    return tags


# --------------------------------------------------------------------------------------------
# shared/data layout


def manifest_offset(coords: str | None, default: float) -> float:
    """Amount to subtract from x and y for a manifest ``coords`` string (see module docstring)."""
    if not coords:
        return default
    c = coords.lower()
    scale = 1.0
    m = re.search(r"scaled\s*x\s*([0-9.]+)", c)
    if m:
        scale = float(m.group(1))
    if "0-based" in c:
        base = 0.0
    elif "1-based" in c:
        base = 1.0
    elif "vot" in c:
        base = 0.0  # VOT toolkit convention; the manifest says ±1 px
    elif "tlp" in c:
        base = 1.0  # not stated; MATLAB tooling like OTB (documented decision)
    else:
        return default
    return base * scale


def load_shared(root: Path) -> list[Sequence]:
    """The project's ``shared/data`` layout: ``boxes/NAME`` and ``masks/NAME`` (+ manifest.json)."""
    entries: dict[str, dict[str, Any]] = {}
    manifest = root / "manifest.json"
    if manifest.is_file():
        for entry in json.loads(manifest.read_text()):
            entries[entry["name"]] = entry
    seqs: list[Sequence] = []
    for kind, default_offset in (("boxes", 1.0), ("masks", 0.0)):
        base = root / kind
        if not base.is_dir():
            continue
        for folder in sorted(p for p in base.iterdir() if p.is_dir()):
            entry = entries.get(folder.name, {})
            frames = list_images(folder / "img")
            gt = folder / ("groundtruth.txt" if kind == "boxes" else "groundtruth_from_mask.txt")
            if not frames or not gt.is_file():
                continue
            offset = manifest_offset(entry.get("coords"), default_offset)
            meta: dict[str, Any] = {
                "format": "shared",
                "kind": entry.get("kind", "box" if kind == "boxes" else "mask"),
                "coord_offset": offset,
                "dataset": entry.get("dataset"),
            }
            boxes = align(folder.name, frames, read_boxes(gt, offset), meta)
            masks = None
            if kind == "masks":
                by_stem = {p.stem: p for p in list_images(folder / "ann")}
                masks = [by_stem.get(f.stem) for f in frames]
            seqs.append(
                Sequence(
                    folder.name,
                    frames,
                    boxes,
                    masks,
                    normalise_attributes(entry.get("attributes")),
                    meta,
                )
            )
    return seqs


# --------------------------------------------------------------------------------------------
# GOT-10k, LaSOT, VOT, DAVIS


def load_got10k(root: Path) -> list[Sequence]:
    """GOT-10k split folder: ``NAME/00000001.jpg ... + groundtruth.txt`` (0-based xywh)."""
    seqs = []
    for folder in _sequence_dirs(root):
        frames = list_images(folder)
        gt = folder / "groundtruth.txt"
        if not frames or not gt.is_file():
            continue
        meta: dict[str, Any] = {"format": "got10k", "coord_offset": 0.0}
        boxes = align(folder.name, frames, read_boxes(gt), meta)
        absence = folder / "absence.label"
        if absence.is_file():
            flags = read_flags(absence)[: len(boxes)]
            boxes[: len(flags)][flags] = np.nan
        seqs.append(Sequence(folder.name, frames, boxes, None, [], meta))
    return seqs


def load_lasot(root: Path) -> list[Sequence]:
    """LaSOT: ``class/class-N/img/*.jpg + groundtruth.txt`` (1-based), or ``class-N`` at top."""
    folders = [p.parent for p in root.glob("*/img") if (p.parent / "groundtruth.txt").is_file()]
    folders += [p.parent for p in root.glob("*/*/img") if (p.parent / "groundtruth.txt").is_file()]
    seqs = []
    for folder in sorted(set(folders), key=lambda p: p.name):
        frames = list_images(folder / "img")
        if not frames:
            continue
        meta: dict[str, Any] = {"format": "lasot", "coord_offset": 1.0}
        boxes = align(folder.name, frames, read_boxes(folder / "groundtruth.txt", 1.0), meta)
        for flag_file in ("full_occlusion.txt", "out_of_view.txt"):
            path = folder / flag_file
            if path.is_file():
                flags = read_flags(path)[: len(boxes)]
                boxes[: len(flags)][flags] = np.nan
        category = folder.name.rsplit("-", 1)[0]
        seqs.append(Sequence(folder.name, frames, boxes, None, [category], meta))
    return seqs


def load_vot(root: Path) -> list[Sequence]:
    """VOT: names in ``list.txt``; ``NAME/color/*.jpg`` or images in ``NAME/``; GT file."""
    listing = root / "list.txt"
    if listing.is_file():
        names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        folders = [root / n for n in names]
    else:
        folders = _sequence_dirs(root)
    seqs = []
    for folder in folders:
        gt = folder / "groundtruth.txt"
        frames = list_images(folder / "color") or list_images(folder)
        if not frames or not gt.is_file():
            print(f"warning: VOT sequence {folder} has no frames or groundtruth", file=sys.stderr)
            continue
        meta: dict[str, Any] = {"format": "vot", "coord_offset": 0.0}
        boxes = align(folder.name, frames, read_boxes(gt), meta)
        tags = sorted(p.stem for p in folder.glob("*.tag"))
        seqs.append(Sequence(folder.name, frames, boxes, None, tags, meta))
    return seqs


def load_davis(root: Path, resolution: str = "480p") -> list[Sequence]:
    """DAVIS: ``JPEGImages/480p/NAME/*.jpg + Annotations/480p/NAME/*.png`` (box = mask box)."""
    img_root = root / "JPEGImages" / resolution
    ann_root = root / "Annotations" / resolution
    if not img_root.is_dir():  # some copies drop the resolution level
        img_root, ann_root = root / "JPEGImages", root / "Annotations"
    seqs = []
    for folder in sorted(p for p in img_root.iterdir() if p.is_dir()):
        frames = list_images(folder)
        by_stem = {p.stem: p for p in list_images(ann_root / folder.name)}
        masks: list[Path | None] = [by_stem.get(f.stem) for f in frames]
        if not frames or not any(m is not None for m in masks):
            continue
        boxes = np.full((len(frames), 4), np.nan)
        for i, path in enumerate(masks):
            if path is not None:
                box = mask_to_box(read_mask(path))
                if box is not None:
                    boxes[i] = box
        meta = {"format": "davis", "coord_offset": 0.0, "mask_object": 1}
        seqs.append(Sequence(folder.name, frames, boxes, masks, [], meta))
    return seqs


def _sequence_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "groundtruth.txt").is_file())


# --------------------------------------------------------------------------------------------
# Format detection and the public entry point


def detect_format(root: Path) -> str:
    """Guess the layout of ``root`` (``--format auto``); raise ``ValueError`` when unknown.

    Order matters: the shared layout and DAVIS have unambiguous marker folders; LaSOT has
    ``img/`` below each sequence; VOT and GOT-10k both have flat sequence folders with a
    ``groundtruth.txt``, told apart by VOT's ``color/`` folders, ``*.tag`` files or polygon
    lines, and GOT-10k's ``meta_info.ini`` / ``absence.label``.
    """
    if (root / "manifest.json").is_file() or (root / "boxes").is_dir() or (root / "masks").is_dir():
        return "shared"
    if (root / "JPEGImages").is_dir() and (root / "Annotations").is_dir():
        return "davis"
    if any(root.glob("*/img/")) or any(root.glob("*/*/img/")):
        return "lasot"
    dirs = _sequence_dirs(root)
    if not dirs:
        raise ValueError(f"cannot detect the dataset format of {root}; pass --format")
    for d in dirs[:5]:
        if (d / "meta_info.ini").is_file() or (d / "absence.label").is_file():
            return "got10k"
        if (d / "color").is_dir() or any(d.glob("*.tag")):
            return "vot"
        rows = read_rows(d / "groundtruth.txt")
        if rows and len(rows[0]) != 4:
            return "vot"
    # Ambiguous (flat folders, 4-value boxes, no markers): both formats are 0-based boxes with
    # images in the sequence folder, so reading it as GOT-10k gives the same sequences.
    return "got10k"


LOADERS = {
    "shared": load_shared,
    "got10k": load_got10k,
    "lasot": load_lasot,
    "vot": load_vot,
    "davis": load_davis,
}


def load_sequences(
    root: str | Path, fmt: str = "auto", names: Iterable[str] | None = None
) -> tuple[str, list[Sequence]]:
    """Load every sequence under ``root`` (or only ``names``, in the order given).

    Returns the format actually used and the sequences. Unknown names raise ``KeyError`` so a
    typo in ``--names`` fails loudly instead of silently evaluating nothing.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data directory {root} does not exist")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if fmt == "auto":
        fmt = detect_format(root)
    seqs = LOADERS[fmt](root)
    if names:
        wanted = [n for n in names if n]
        by_name = {s.name: s for s in seqs}
        missing = [n for n in wanted if n not in by_name]
        if missing:
            raise KeyError(
                f"unknown sequence(s) {', '.join(missing)}; available: {', '.join(by_name)}"
            )
        seqs = [by_name[n] for n in wanted]
    return fmt, seqs
