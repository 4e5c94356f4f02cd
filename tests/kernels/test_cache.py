"""Graphs built on first use and kept on disk: served only when their hash holds."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest

import kernels.graph
import kernels.runtime
from kernels import REGISTRY
from kernels.cache import DIGEST, GraphCache, generation
from kernels.composite import term
from kernels.composites import composite
from kernels.graph import GraphKey
from kernels.runtime import Runtime, all_keys, cache_stem, cacheable, prebuild
from kernels.spec import NO_RESOURCES, LossSpec, Registry, Resources


def named(name: str) -> LossSpec:
    spec = REGISTRY.get(name)
    assert spec is not None
    return spec


MSE, FOCAL = named("mse"), named("focal")


def two_losses() -> Registry:
    registry = Registry()
    registry.add(MSE)
    registry.add(FOCAL)
    return registry


def focal_key() -> GraphKey:
    return GraphKey("focal", FOCAL.variant(FOCAL.params()), "float32", True)


def focal(runtime: Runtime) -> float:
    inputs = {"predictions": [0.2, 0.9, 0.4], "targets": [0.0, 1.0, 1.0]}
    return float(runtime.evaluate(FOCAL, inputs, dtype="float32").loss)


def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The stems of the graphs built from source from now on."""
    built: list[str] = []
    real = kernels.graph.build_model

    def counting(spec: LossSpec, key: GraphKey, resources: Resources = NO_RESOURCES) -> onnx.ModelProto:
        built.append(key.stem)
        return real(spec, key, resources)

    monkeypatch.setattr(kernels.runtime, "build_model", counting)
    return built


def test_a_graph_is_built_on_first_use_and_then_read_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = builds(monkeypatch)
    first = Runtime(two_losses(), "cpu", 1, cache=GraphCache(tmp_path))
    assert focal_key().stem not in built  # nothing but one graph is built at start
    expected = focal(first)
    assert built.count(focal_key().stem) == 1
    assert GraphCache(tmp_path).get(focal_key().stem) is not None

    built.clear()
    second = Runtime(two_losses(), "cpu", 1, cache=GraphCache(tmp_path))
    assert focal(second) == expected
    assert built == [], "a cached graph was built again"


def mix(mse_weight: float) -> Registry:
    """A registry of one composite named "mix", as LOSSD_COMPOSITES declares one."""
    registry = Registry()
    registry.add(composite("mix", [term(MSE, mse_weight), term(named("mae"), 1.0)]))
    return registry


def mix_loss(registry: Registry, cache: GraphCache) -> float:
    spec = registry.get("mix")
    assert spec is not None
    inputs = {"predictions": [0.5, 2.0, -1.0], "targets": [0.0, 1.0, 1.0]}
    return float(Runtime(registry, "cpu", 1, cache=cache).evaluate(spec, inputs, dtype="float32").loss)


def test_a_named_composite_is_read_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = builds(monkeypatch)
    expected = mix_loss(mix(0.5), GraphCache(tmp_path))
    assert built, "the composite's graph was not built"
    built.clear()
    assert mix_loss(mix(0.5), GraphCache(tmp_path)) == expected
    assert built == [], "a cached composite graph was built again"


def test_a_name_given_other_terms_gets_its_own_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A composite renamed in LOSSD_COMPOSITES between starts is never served the old terms' graph."""
    first, second = mix(0.5), mix(2.0)
    key = GraphKey("mix", (), "float32", False)
    stems = {cache_stem(r.get("mix") or MSE, key) for r in (first, second)}
    assert len(stems) == 2 and all(s.startswith(key.stem + ".") for s in stems)
    assert mix_loss(first, GraphCache(tmp_path)) != mix_loss(second, GraphCache(tmp_path))
    assert mix_loss(second, GraphCache(tmp_path)) == pytest.approx(2.0 * 5.25 / 3 + 3.5 / 3, rel=1e-6)


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_a_corrupt_entry_is_rebuilt_not_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    cache = GraphCache(tmp_path)
    expected = focal(Runtime(two_losses(), "cpu", 1, cache=cache))
    path = cache.path(focal_key().stem)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[DIGEST + len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data[: len(data) // 2] if damage == "truncate" else b"" if damage == "empty" else data))

    built = builds(monkeypatch)
    with caplog.at_level(logging.WARNING, "lossd.cache"):
        assert focal(Runtime(two_losses(), "cpu", 1, cache=GraphCache(tmp_path))) == expected
    assert focal_key().stem in built
    assert "corrupt" in caplog.text
    assert GraphCache(tmp_path).get(focal_key().stem) is not None, "the rebuilt graph replaced the bad entry"


def test_entries_live_under_this_codes_generation(tmp_path: Path) -> None:
    """Graphs of another version or other kernel sources are in another directory, never read."""
    cache = GraphCache(tmp_path)
    assert cache.directory == tmp_path / generation()
    assert generation().startswith("0.1.0-")
    stale = tmp_path / "0.0.9-0000000000000000"
    stale.mkdir()
    focal(Runtime(two_losses(), "cpu", 1, cache=cache))
    assert list(stale.iterdir()) == []
    assert cache.path(focal_key().stem).is_file()


def test_an_unwritable_cache_still_serves(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache directory would be")
    with caplog.at_level(logging.WARNING, "lossd.cache"):
        loss = focal(Runtime(two_losses(), "cpu", 1, cache=GraphCache(blocked)))
    assert np.isfinite(loss)
    assert caplog.text.count("not writable") == 1


def test_prebuild_fills_the_cache_with_every_declared_graph(tmp_path: Path) -> None:
    cache = GraphCache(tmp_path)
    registry = two_losses()
    expected = {key.stem for spec, key in all_keys(registry) if cacheable(spec)}
    # mse; focal: 8 variants (from_logits x label_smoothing x class_weights) x 2 dtypes x fwd/grad x 2 layouts
    assert prebuild(registry, cache) == len(expected) == 8 + 64
    assert {p.name.removesuffix(".onnx") for p in cache.directory.glob("*.onnx")} == expected
    assert prebuild(registry, cache) == 0


def test_entries_are_readable_by_every_user(tmp_path: Path) -> None:
    """An image prebuilds as root and serves as uid 10001: a 0600 entry would be rebuilt on every start."""
    cache = GraphCache(tmp_path)
    assert cache.put("stem", b"graph")
    assert cache.path("stem").stat().st_mode & 0o777 == 0o644


def test_prebuild_into_an_unwritable_cache_fails_loudly(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache directory would be")
    with pytest.raises(OSError, match="cannot write graphs"):
        prebuild(two_losses(), GraphCache(blocked))
