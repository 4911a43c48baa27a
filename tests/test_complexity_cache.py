"""The on-disk cache of fvcore counts: a second count of the same model in the same checkout is read back
whole; an edited source, a corrupt entry or ``off`` means counting again."""

import dataclasses
import importlib
import json
import os
import subprocess
import sys

import pytest

from mamkpd.harness.measure import complexity, count_cache
from mamkpd.harness.measure.complexity import measure_complexity
from mamkpd.models import registry

SIZE = (64, 64)  # RTMPose-t at 64x64 counts in well under a second


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(count_cache.CACHE_ENV, str(tmp_path / "counts"))
    return tmp_path / "counts"


def refuse_to_count(*args, **kwargs):
    raise AssertionError("counted again")


def test_a_second_count_is_read_back_whole(cache, monkeypatch):
    first = measure_complexity("rtmpose_t", SIZE)
    assert [p.name.split("-")[0] for p in cache.iterdir()] == ["rtmpose_t"]
    monkeypatch.setattr(complexity, "measure_model", refuse_to_count)
    again = measure_complexity("rtmpose_t", SIZE)
    assert again == first and again.counter == "fvcore" and again.input_size == SIZE
    with pytest.raises(AssertionError, match="counted again"):  # another size is another entry
        measure_complexity("rtmpose_t", (96, 64))
    with pytest.raises(AssertionError, match="counted again"):  # so are other factory overrides
        measure_complexity("rtmpose_t", SIZE, num_keypoints=5)


def test_the_scan_backend_auto_resolves_to_is_part_of_the_key(cache, monkeypatch):
    # where numba is missing, `auto` runs the unfused torch scan: another trace, so another entry
    scans = importlib.import_module("mamkpd.ops.selective_scan")  # the module (the package exports the function)

    fused = count_cache._key("mamkpd_s", SIZE, 1, {})
    real = scans.backend_unavailable
    with monkeypatch.context() as patched:
        patched.setattr(scans, "backend_unavailable", lambda n, d: "absent" if n == "numba" else real(n, d))
        assert count_cache._key("mamkpd_s", SIZE, 1, {}) != fused
    assert count_cache._key("mamkpd_s", SIZE, 1, {}) == fused


def test_an_edited_source_changes_the_digest(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "model.py").write_text("WIDTH = 32\n")
    before = count_cache.source_digest([tmp_path / "pkg"])
    assert count_cache.source_digest([tmp_path / "pkg"]) == before
    (tmp_path / "pkg" / "model.py").write_text("WIDTH = 64\n")
    assert count_cache.source_digest([tmp_path / "pkg"]) != before
    (tmp_path / "pkg" / "model.py").write_text("WIDTH = 32\n")
    (tmp_path / "pkg" / "new.py").write_text("")
    assert count_cache.source_digest([tmp_path / "pkg"]) != before


def test_another_source_digest_counts_again(cache, monkeypatch):
    measure_complexity("rtmpose_t", SIZE)
    monkeypatch.setattr(count_cache, "_sources", lambda: "digest of an edited checkout")
    counts = []
    monkeypatch.setattr(complexity, "measure_model", lambda *a, **k: counts.append(a) or refuse_to_count())
    with pytest.raises(AssertionError, match="counted again"):
        measure_complexity("rtmpose_t", SIZE)
    assert len(counts) == 1


def test_off_and_models_from_elsewhere_are_counted_every_time(cache, monkeypatch):
    monkeypatch.setenv(count_cache.CACHE_ENV, "off")
    measure_complexity("rtmpose_t", SIZE)
    assert not cache.exists()
    monkeypatch.setenv(count_cache.CACHE_ENV, str(cache))
    info = registry.model_info("rtmpose_t")

    def plugin_model(**overrides):
        return info.factory(**overrides)

    plugin_model.__module__ = "a_plugin_package.models"  # registered by another package
    monkeypatch.setitem(registry._REGISTRY, "plugin_model", dataclasses.replace(info, factory=plugin_model))
    measure_complexity("plugin_model", SIZE)
    assert not cache.exists()


@pytest.mark.parametrize("damage", ['{"model": "rtmpose_t"}', '{"model": "rtmpose_t", "params": "7"}', ""])
def test_an_entry_that_is_not_a_count_is_counted_again(cache, damage):
    first = measure_complexity("rtmpose_t", SIZE)
    (entry,) = cache.iterdir()
    stored = json.loads(entry.read_text())
    entry.write_text(damage)
    assert measure_complexity("rtmpose_t", SIZE) == first
    assert json.loads(entry.read_text()) == stored  # rewritten whole


def test_a_tampered_count_is_counted_again(cache):
    first = measure_complexity("rtmpose_t", SIZE)
    (entry,) = cache.iterdir()
    entry.write_text(json.dumps(dict(json.loads(entry.read_text()), params=str(first.params))))
    assert measure_complexity("rtmpose_t", SIZE).params == first.params


def cli_count(cache):
    env = {**os.environ, count_cache.CACHE_ENV: str(cache)}
    args = ["complexity", "--model", "rtmpose_t", "--input-size", *map(str, SIZE), "--json"]
    return subprocess.run([sys.executable, "-m", "mamkpd", *args], capture_output=True, text=True, env=env, timeout=300)


def test_the_cli_counts_a_corrupt_entry_again_without_a_traceback(cache):
    first = cli_count(cache)
    assert first.returncode == 0, first.stderr
    (entry,) = cache.iterdir()
    entry.write_text("{not json")
    again = cli_count(cache)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert json.loads(again.stdout) == json.loads(first.stdout)
    assert json.loads(entry.read_text())["params"] == json.loads(first.stdout)["params"]  # rewritten whole
