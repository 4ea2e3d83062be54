import pytest

from compression import timing
from compression.timing import LLAMA3_8B, SvdTimingArgs, llama3_8b_estimate, parse_shape, time_factorisation


def test_parse_shape_reads_out_by_in_and_rejects_junk():
    assert parse_shape("4096x14336") == (4096, 14336)
    with pytest.raises(ValueError, match="OUTxIN"):
        parse_shape("4096*14336")
    with pytest.raises(ValueError):
        SvdTimingArgs(methods=["magic"])


@pytest.mark.parametrize("method", ["plain", "whitened"])
def test_time_factorisation_times_the_factorisation_asked_for(method, monkeypatch):
    calls = []
    real = timing.factorise

    def spy(weight, rank, how, gram=None, damping=1e-2):
        calls.append((tuple(weight.shape), rank, how, gram is not None))
        return real(weight, rank, how, gram, damping)

    monkeypatch.setattr(timing, "factorise", spy)
    seconds = time_factorisation(48, 32, method, "cpu", rank_ratio=0.25, calib_tokens=64, repeats=2)
    assert seconds > 0
    assert calls == [((48, 32), 8, method, method == "whitened")] * 2  # rank 0.25·min(48, 32), once per repeat


def test_llama3_8b_estimate_sums_32_layers():
    times = {"4096x4096": 2.0, "1024x4096": 1.0, "14336x4096": 5.0, "4096x14336": 7.0}
    estimate = llama3_8b_estimate(times)
    assert estimate["attn"] == pytest.approx(32 * (2 + 1 + 1 + 2))
    assert estimate["attn+mlp"] == pytest.approx(32 * (2 + 1 + 1 + 2 + 5 + 5 + 7))
    assert llama3_8b_estimate({"4096x4096": 1.0}) is None
    assert LLAMA3_8B["layers"] == 32
