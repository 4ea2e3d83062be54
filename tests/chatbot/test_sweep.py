import json
import os
from pathlib import Path

import pytest

from chatbot.build import HealArgs
from chatbot.lora import LoraSettings
from chatbot.sweep import Point, SweepArgs, build_point, points, run_sweep
from chatbot.train import DistillSettings, FitSettings


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Compressed factors go to a cache of the test's own (spawned sweep workers inherit it)."""
    monkeypatch.setenv("CHATBOT_CACHE", str(tmp_path / "cache"))


def heal(epochs, **lora) -> HealArgs:
    return HealArgs(fit=FitSettings(epochs=epochs), lora=LoraSettings(r=2, **lora))


def test_sweep_runs_dense_first_and_writes_table_and_plot(tiny_base, tiny_data, tmp_path):
    report = run_sweep(SweepArgs(data=[str(tiny_data)], report=str(tmp_path), base=str(tiny_base),
                                 ratios=[1.0, 0.25], methods=["whitened"], compress_targets=["attn+mlp"],
                                 heal=heal(2)))
    points = report["points"]
    assert [p["method"] for p in points] == ["none", "whitened"]
    assert all("error" not in p for p in points), points
    dense, compressed = points
    assert compressed["parameters"] < dense["parameters"]
    saved = dense["parameters"] - compressed["parameters"]
    assert dense["non_embedding_parameters"] - compressed["non_embedding_parameters"] == saved
    assert dense["non_embedding_parameters"] < dense["parameters"]
    assert compressed["compression"]["model_params_after"] < compressed["compression"]["model_params_before"]
    assert (tmp_path / "sweep.png").stat().st_size > 1000
    assert "| 0.25 | – | whitened | attn+mlp | full |" in (tmp_path / "sweep.md").read_text()
    assert json.loads((tmp_path / "sweep.json").read_text())["points"][0]["ratio"] == 1.0


def test_parallel_sweep_keeps_point_order(tiny_base, tiny_data, tmp_path):
    report = run_sweep(SweepArgs(data=[str(tiny_data)], report=str(tmp_path), base=str(tiny_base),
                                 ratios=[1.0, 0.5, 0.25], methods=["plain"], compress_targets=["attn"],
                                 heal=heal(1, targets=["q_proj", "v_proj"]), jobs=2))
    points = report["points"]
    assert [(p["ratio"], p["method"]) for p in points] == [(1.0, "none"), (0.5, "plain"), (0.25, "plain")]
    assert all("accuracy" in p for p in points), points
    assert points[2]["parameters"] < points[1]["parameters"] < points[0]["parameters"]
    assert report["args"]["jobs"] == 2


def dies_on_plain(args, point, threads=None):
    """A sweep worker that is killed (as by the kernel's OOM killer) on plain points."""
    if point.method == "plain":
        os._exit(9)
    return {"ratio": point.ratio, "method": point.method, "targets": point.targets, "accuracy": 1.0,
            "macro_f1": 1.0, "parameters": 1, "size_mb": 0.0, "per_language": {}, "latency_ms": {"p50": 0.0}}


def test_a_dead_worker_becomes_an_error_row_and_the_sweep_goes_on(tiny_data, tmp_path):
    args = SweepArgs(data=[str(tiny_data)], report=str(tmp_path), ratios=[0.5], methods=["whitened", "plain"],
                     compress_targets=["attn"], jobs=2)
    report = run_sweep(args, build=dies_on_plain)
    rows = {(p["method"]): p for p in report["points"]}
    assert "error" in rows["plain"] and "BrokenProcessPool" in rows["plain"]["error"]
    assert "failed:" in (tmp_path / "sweep.md").read_text()


def test_point_names_and_validation(tiny_data, tmp_path):
    assert Point(1.0, "none", "none").name == "dense"
    assert Point(0.25, "whitened", "attn+mlp").name == "whitened-attn_mlp-0.25"
    with pytest.raises(ValueError, match="jobs"):
        SweepArgs(data=[str(tiny_data)], report=str(tmp_path), jobs=0)
    with pytest.raises(ValueError, match="--source"):
        SweepArgs(data=[str(tiny_data)], report=str(tmp_path), heal=HealArgs(distill=DistillSettings(weight=0.5)))
    with pytest.raises(ValueError, match="min saving"):
        SweepArgs(data=[str(tiny_data)], report=str(tmp_path), params_keep=[0.5], min_saving=1.0)
    with pytest.raises(ValueError, match="--params-keep"):
        SweepArgs(data=[str(tiny_data)], report=str(tmp_path), min_saving=0.5)


def test_min_saving_reaches_the_budget_points_only(tiny_data, tmp_path, monkeypatch):
    seen = {}

    def recorded(data, out, *args, params_keep=None, min_saving=0.0, **kwargs):
        seen[Path(out).name] = min_saving
        return {"error": "not built"}

    monkeypatch.setattr("chatbot.sweep.build_version", recorded)
    args = SweepArgs(data=[str(tiny_data)], report=str(tmp_path), ratios=[1.0, 0.5], methods=["whitened"],
                     compress_targets=["attn+mlp"], params_keep=[0.7], min_saving=0.5)
    for point in points(args):
        build_point(args, point)
    assert seen == {"dense": 0.0, "whitened-attn_mlp-0.5": 0.0, "whitened-attn_mlp-keep0.7": 0.5}
