import json

from chatbot.sweep import SweepArgs, run_sweep


def test_sweep_runs_dense_first_and_writes_table_and_plot(tiny_base, tiny_data, tmp_path):
    report = run_sweep(SweepArgs(data=[str(tiny_data)], report=str(tmp_path), base=str(tiny_base),
                                 ratios=[1.0, 0.25], methods=["whitened"], targets=["attn+mlp"], epochs=2,
                                 lora_r=2))
    points = report["points"]
    assert [p["method"] for p in points] == ["none", "whitened"]
    assert all("error" not in p for p in points), points
    dense, compressed = points
    assert compressed["parameters"] < dense["parameters"]
    assert compressed["compression"]["model_params_after"] < compressed["compression"]["model_params_before"]
    assert (tmp_path / "sweep.png").stat().st_size > 1000
    assert "| 0.25 | whitened | attn+mlp |" in (tmp_path / "sweep.md").read_text()
    assert json.loads((tmp_path / "sweep.json").read_text())["points"][0]["ratio"] == 1.0


def test_parallel_sweep_keeps_point_order(tiny_base, tiny_data, tmp_path):
    report = run_sweep(SweepArgs(data=[str(tiny_data)], report=str(tmp_path), base=str(tiny_base),
                                 ratios=[1.0, 0.5, 0.25], methods=["plain"], targets=["attn"], epochs=1,
                                 lora_r=2, lora_targets=["q_proj", "v_proj"], jobs=2))
    points = report["points"]
    assert [(p["ratio"], p["method"]) for p in points] == [(1.0, "none"), (0.5, "plain"), (0.25, "plain")]
    assert all("accuracy" in p for p in points), points
    assert points[2]["parameters"] < points[1]["parameters"] < points[0]["parameters"]
    assert report["args"]["jobs"] == 2


def test_sweep_rejects_zero_jobs(tiny_data, tmp_path):
    import pytest

    with pytest.raises(ValueError, match="jobs"):
        SweepArgs(data=[str(tiny_data)], report=str(tmp_path), jobs=0)
