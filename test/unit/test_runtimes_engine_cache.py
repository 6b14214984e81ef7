"""TensorRT engine cache logic, without TensorRT.

The TensorRT builder cannot exist in this workplace (no GPU; only the lean runtime is on PyPI,
and it cannot build engines), so the builder is a fake callable that writes bytes. What is
tested is ours: the key, the file names, hit/miss/rebuild decisions and binding shapes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from meta_tracker_ros.core.backbone import engine_cache as ec


def key(**overrides) -> ec.EngineKey:
    args = dict(
        trt_version="10.3.0",
        gpu_name="Orin",
        compute_capability=(8, 7),
        onnx_sha256="a" * 64,
        input_size=256,
        max_batch=4,
        precision="fp16",
    )
    args.update(overrides)
    return ec.make_engine_key(**args)


class FakeBuilder:
    """Stands in for trt_build.build_engine_file: records calls, writes a fake engine."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[ec.EngineKey] = []
        self.fail = fail

    def __call__(self, engine_out: Path, timing_cache: Path, k: ec.EngineKey) -> None:
        self.calls.append(k)
        if self.fail:
            engine_out.write_bytes(b"partial")
            raise RuntimeError("builder crashed")
        engine_out.write_bytes(f"engine for {k.digest()}".encode())
        timing_cache.write_bytes(b"timing")


@pytest.mark.parametrize(
    "change",
    [
        {"trt_version": "10.4.0"},
        {"gpu_name": "NVIDIA H100"},
        {"compute_capability": (9, 0)},
        {"onnx_sha256": "b" * 64},
        {"input_size": 288},
        {"input_size": (256, 320)},
        {"max_batch": 8},
        {"precision": "fp32"},
        {"opt_batch": 2},
    ],
)
def test_key_changes_with_each_component(change):
    assert key(**change).digest() != key().digest()
    assert key(**change) != key()


def test_key_is_stable_and_validated():
    assert key().digest() == key().digest()
    assert len(key().digest()) == 16
    assert key().max_shape == (4, 3, 256, 256) and key().min_shape == (1, 3, 256, 256)
    with pytest.raises(ValueError, match="precision"):
        key(precision="int8")
    with pytest.raises(ValueError, match="max_batch"):
        key(max_batch=0)


def test_file_names_carry_key_and_share_timing_cache(tmp_path):
    a = ec.engine_paths(tmp_path, key(), "lite0 s4,s8")
    assert a.engine.parent == tmp_path
    assert a.engine.name == f"lite0-s4-s8_fp16_256x256_b4_{key().digest()}.engine"
    assert a.key.name.endswith(".key.json")
    b = ec.engine_paths(tmp_path, key(onnx_sha256="c" * 64, precision="fp32"), "lite0 s4,s8")
    assert b.engine != a.engine
    assert b.timing_cache == a.timing_cache  # same TensorRT + GPU: one timing cache
    assert ec.engine_paths(tmp_path, key(gpu_name="H100")).timing_cache != a.timing_cache


def test_default_engine_dir_is_per_user_not_tmp(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ec.default_engine_dir() == tmp_path / "xdg" / "meta_tracker_ros" / "engines"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert ec.default_engine_dir() == Path.home() / ".cache" / "meta_tracker_ros" / "engines"
    assert ec.resolve_engine_dir("") == ec.default_engine_dir()
    assert ec.resolve_engine_dir(str(tmp_path)) == tmp_path


def test_miss_then_hit_then_rebuild_on_key_change(tmp_path):
    build = FakeBuilder()
    path, built = ec.get_or_build(tmp_path, key(), build)
    assert built and path.is_file() and len(build.calls) == 1
    assert ec.lookup(ec.engine_paths(tmp_path, key()), key()) == "hit"
    path2, built2 = ec.get_or_build(tmp_path, key(), build)
    assert path2 == path and not built2 and len(build.calls) == 1  # cache hit: no build
    path3, built3 = ec.get_or_build(tmp_path, key(trt_version="10.4.0"), build)
    assert built3 and path3 != path and len(build.calls) == 2  # TensorRT upgrade: rebuild
    assert path.is_file()  # the old entry is kept (another machine/config may use it)
    _, built4 = ec.get_or_build(tmp_path, key(), build, force_rebuild=True)
    assert built4 and len(build.calls) == 3


def test_tampered_or_partial_entries_are_misses(tmp_path):
    build = FakeBuilder()
    ec.get_or_build(tmp_path, key(), build)
    paths = ec.engine_paths(tmp_path, key())
    stored = json.loads(paths.key.read_text())
    stored["gpu_name"] = "other"
    paths.key.write_text(json.dumps(stored))
    assert ec.lookup(paths, key()) == "miss: key changed (gpu_name)"
    paths.key.unlink()
    assert ec.lookup(paths, key()) == "miss: no key file"
    paths.engine.write_bytes(b"")
    assert ec.lookup(paths, key()) == "miss: empty engine file"
    _, built = ec.get_or_build(tmp_path, key(), build)
    assert built and ec.lookup(paths, key()) == "hit"


def test_failed_build_leaves_no_usable_entry(tmp_path):
    with pytest.raises(RuntimeError, match="builder crashed"):
        ec.get_or_build(tmp_path, key(), FakeBuilder(fail=True))
    paths = ec.engine_paths(tmp_path, key())
    assert ec.lookup(paths, key()).startswith("miss")
    assert not list(tmp_path.glob(".build-*"))  # the temporary file is cleaned up


# ------------------------------------------------------------------ binding-shape planning
STRIDES = {"s4": 4, "s8": 8, "s16": 16}
CHANNELS = {"s4": 24, "s8": 40, "s16": 112}


def engine_tensors(hw=(256, 256)) -> list[ec.TensorInfo]:
    h, w = hw
    return [
        ec.TensorInfo("image", True, (-1, 3, h, w), "float32"),
        *(
            ec.TensorInfo(lv, False, (-1, CHANNELS[lv], h // s, w // s), "float32")
            for lv, s in STRIDES.items()
        ),
    ]


def test_plan_bindings_shapes():
    plan = ec.plan_bindings(engine_tensors(), 3, (256, 256), 4, STRIDES, CHANNELS)
    assert plan == {
        "image": (3, 3, 256, 256),
        "s4": (3, 24, 64, 64),
        "s8": (3, 40, 32, 32),
        "s16": (3, 112, 16, 16),
    }


def test_plan_bindings_unused_output_gets_a_buffer():
    plan = ec.plan_bindings(engine_tensors(), 2, (256, 256), 4, {"s8": 8}, {"s8": 40})
    assert plan["s4"] == (2, 24, 64, 64)


@pytest.mark.parametrize(
    ("tensors", "batch", "hw", "words"),
    [
        (engine_tensors(), 5, (256, 256), "outside the engine profile"),
        (engine_tensors(), 0, (256, 256), "outside the engine profile"),
        (engine_tensors(), 1, (288, 288), "engine declares"),
        (engine_tensors()[:-1], 1, (256, 256), "lacks outputs"),
        (engine_tensors()[1:], 1, (256, 256), "one input"),
        (engine_tensors((250, 250)), 1, (250, 250), "not a multiple of stride"),
    ],
)
def test_plan_bindings_refuses_mismatch(tensors, batch, hw, words):
    with pytest.raises(ValueError, match=words):
        ec.plan_bindings(tensors, batch, hw, 4, STRIDES, CHANNELS)


def test_plan_bindings_wrong_channels_refused():
    tensors = [
        dataclasses.replace(t, shape=(-1, 32, 16, 16)) if t.name == "s16" else t
        for t in engine_tensors()
    ]
    with pytest.raises(ValueError, match="'s16'"):
        ec.plan_bindings(tensors, 1, (256, 256), 4, STRIDES, CHANNELS)
