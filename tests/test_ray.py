"""fdiwn_sr.ray on a real local Ray instance (127.0.0.1, 2 CPUs, one per module): outputs equal upscale()'s."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scale_out_data import CORRUPT, files, good_images, output_name, pixels

import fdiwn_sr
from fdiwn_sr import images

if os.environ.get("CI"):  # under CI a missing extra fails instead of skipping
    import ray
else:
    ray = pytest.importorskip("ray", reason="needs the 'ray' extra: pip install -e '.[ray]'")

from fdiwn_sr.ray import Upscale, upscale_dataset

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def expected(mixed_folder, x4_weights, tmp_path_factory) -> Path:
    """Single-process upscale() of every good image, written as PNG/JPEG by save_image."""
    out = tmp_path_factory.mktemp("expected")
    for rel in good_images(mixed_folder):
        result = fdiwn_sr.upscale(mixed_folder / rel, 4, weights=x4_weights, device="cpu")
        images.save_image(result, out / output_name(rel, 4))
    return out


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_upscale_dataset_equals_upscale_and_records_the_corrupt_file(
    cluster, mixed_folder, x4_weights, expected, tmp_path
):
    out = tmp_path / "out"
    result = upscale_dataset(mixed_folder, out, 4, weights=x4_weights, concurrency=2, threads=1)
    names = [output_name(rel, 4) for rel in good_images(mixed_folder)]
    assert files(out) == sorted(names)  # every good image written once, nothing partial, nothing for the bad one
    assert sorted(Path(p).relative_to(out).as_posix() for p in result.written) == sorted(names)
    assert result.errors == [{"path": str(mixed_folder / CORRUPT), "reason": result.errors[0]["reason"]}]
    assert "cannot read image" in result.errors[0]["reason"]
    for name in names:
        mode, got = pixels(out / name)
        want_mode, want = pixels(expected / name)
        assert mode == want_mode and np.array_equal(got, want), name
    modes = {pixels(out / name)[0] for name in names}
    assert {"RGB", "RGBA", "L", "LA", "P", "I;16"} <= modes  # 16-bit and alpha kept

    again = upscale_dataset(mixed_folder, out, 4, weights=x4_weights, concurrency=2, threads=1)  # resumable
    assert again.written == [] and len(again.skipped) == len(names) and len(again.errors) == 1


def test_callable_class_on_read_images(cluster, mixed_folder, x4_weights):
    """Mixed sizes and modes arrive as object arrays. read_images cannot mix 8- and 16-bit files in one
    dataset (Arrow refuses to join uint8 and uint16 tensors), so the 16-bit ones are read on their own."""
    kinds = [rel for rel in good_images(mixed_folder) if "palette" not in rel]  # read_images gives palette indices
    for group in ([rel for rel in kinds if "deep" not in rel], [rel for rel in kinds if "deep" in rel]):
        ds = ray.data.read_images([str(mixed_folder / rel) for rel in group], include_paths=True).map_batches(
            Upscale,
            fn_constructor_kwargs={"scale": 4, "weights": str(x4_weights), "device": "cpu"},
            batch_size=4,
            compute=ray.data.ActorPoolStrategy(size=1),
        )
        rows = {Path(r["path"]).relative_to(mixed_folder).as_posix(): r["image"] for r in ds.iter_rows()}
        assert sorted(rows) == group
        for rel in group:
            want = np.asarray(fdiwn_sr.upscale(mixed_folder / rel, 4, weights=x4_weights, device="cpu"))
            got = rows[rel]
            if got.ndim == 3 and want.ndim == 2:  # Ray pads gray images among colour ones to 1 x H x W
                got = got[0]
            assert got.dtype == want.dtype and np.array_equal(got, want), rel


def test_example_runs(cluster, mixed_folder, x4_weights, tmp_path):
    address = ray.get_runtime_context().gcs_address  # the test's Ray instance, not a second one
    command = [sys.executable, str(EXAMPLES / "ray_batch.py"), str(mixed_folder), str(tmp_path / "out")]
    r = subprocess.run(
        [*command, "--weights", str(x4_weights), "--address", address], capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"errors: 1 ({mixed_folder / CORRUPT}" in r.stdout


def test_options_pass_through_to_load_model_and_upscale(x4_weights):
    """Every keyword-only option of load_model and every per-call option of upscale reaches the actor; a typo
    (or progress bars, which stay with the driver) is a TypeError naming it, before any model is loaded."""
    actor = Upscale(4, weights=str(x4_weights), device="cpu", dtype=None, offline=True, tile=64, tile_overlap=8)
    assert actor.options == {"tile": 64, "tile_overlap": 8}
    assert actor.upscaler.device.type == "cpu"
    for bad in ({"tiles": 64}, {"progress": True}):
        with pytest.raises(TypeError, match=next(iter(bad))):
            Upscale(4, weights=str(x4_weights), **bad)
