import pytest

from academy_diffusion import bench


@pytest.mark.slow
def test_short_benchmark_runs_and_reports(needs_mnist, monkeypatch, capsys):
    monkeypatch.setenv("ACADEMY_PROFILE", "quick")
    res = bench.run(short=True)
    for key in ("train_images_per_second_package", "train_images_per_second_naive",
                "sample_images_per_second_ddim20", "sample_images_per_second_ddim20_guided",
                "sample_images_per_second_ddpm1000", "sample_images_per_second_ddpm1000_guided", "peak_memory_mb"):
        assert res[key] > 0, key
    assert res["train_speedup_vs_naive"] == pytest.approx(
        res["train_images_per_second_package"] / res["train_images_per_second_naive"])
    # DDIM-20 makes 50x fewer network calls than DDPM-1000: it must be much faster per image
    assert res["sample_images_per_second_ddim20"] > 10 * res["sample_images_per_second_ddpm1000"]
    table = bench.format_table(res)
    assert "naive" in table and "ddpm1000_guided" in table and res["device"] in table
