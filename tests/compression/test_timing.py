import json

import pytest

from chatbot.__main__ import main
from compression.timing import LLAMA3_8B, SvdTimingArgs, llama3_8b_estimate, parse_shape, time_factorisation


def test_parse_shape_reads_out_by_in_and_rejects_junk():
    assert parse_shape("4096x14336") == (4096, 14336)
    with pytest.raises(ValueError, match="OUTxIN"):
        parse_shape("4096*14336")
    with pytest.raises(ValueError):
        SvdTimingArgs(report="x", methods=["magic"])


@pytest.mark.parametrize("method", ["plain", "whitened"])
def test_time_factorisation_is_positive(method):
    assert 0 < time_factorisation(48, 32, method, "cpu", calib_tokens=64) < 60


def test_llama3_8b_estimate_sums_32_layers():
    times = {"4096x4096": 2.0, "1024x4096": 1.0, "14336x4096": 5.0, "4096x14336": 7.0}
    estimate = llama3_8b_estimate(times)
    assert estimate["attn"] == pytest.approx(32 * (2 + 1 + 1 + 2))
    assert estimate["attn+mlp"] == pytest.approx(32 * (2 + 1 + 1 + 2 + 5 + 5 + 7))
    assert llama3_8b_estimate({"4096x4096": 1.0}) is None
    assert len(LLAMA3_8B["attn"]) == 4 and len(LLAMA3_8B["mlp"]) == 3


def test_bench_svd_command_writes_json_and_table(tmp_path):
    assert main(["bench-svd", "--report", str(tmp_path), "--shapes", "40x24,24x40", "--devices", "cpu"]) == 0
    report = json.loads((tmp_path / "svd_timing.json").read_text())
    assert {(r["shape"], r["method"]) for r in report["rows"]} == {
        ("40x24", "plain"), ("24x40", "plain"), ("40x24", "whitened"), ("24x40", "whitened")}
    assert "| cpu | whitened | 40x24 | 6 |" in (tmp_path / "svd_timing.md").read_text()
    assert main(["bench-svd", "--report", str(tmp_path), "--shapes", "40by24"]) == 2
