import pytest
import torch
from torch import nn

from compression.svd import LowRankLinear, factorise, find_linears, output_error, replace_module, saves_parameters


def layer_and_inputs(m=24, n=16, samples=200, seed=0):
    torch.manual_seed(seed)
    linear = nn.Linear(n, m)
    # Correlated inputs with a few dominant directions, like real activations.
    mixing = torch.randn(n, n) * torch.logspace(0, -2, n)[None, :]
    x = torch.randn(samples, n) @ mixing.T + 0.3 * torch.randn(samples, n)
    return linear, x, x.T.double() @ x.double()


@pytest.mark.parametrize("method", ["plain", "whitened"])
def test_full_rank_reproduces_the_layer(method):
    linear, x, gram = layer_and_inputs()
    low = LowRankLinear.from_linear(linear, rank=16, method=method, gram=gram, damping=1e-8)
    assert (low.in_features, low.out_features) == (16, 24)
    assert torch.allclose(low(x), linear(x), atol=1e-4)


@pytest.mark.parametrize("method", ["plain", "whitened"])
def test_error_falls_as_rank_grows(method):
    linear, x, gram = layer_and_inputs()
    errors = []
    for rank in (2, 4, 8, 12, 16):
        down, up = factorise(linear.weight, rank, method, gram, 1e-6)
        errors.append(output_error(linear.weight, up @ down, gram))
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-4


def test_whitened_beats_plain_on_calibration_outputs():
    for seed in range(3):
        linear, x, gram = layer_and_inputs(seed=seed)
        for rank in (2, 4, 8):
            plain = LowRankLinear.from_linear(linear, rank, "plain")
            white = LowRankLinear.from_linear(linear, rank, "whitened", gram, 1e-6)
            e_plain = output_error(linear.weight, plain.dense_weight(), gram)
            e_white = output_error(linear.weight, white.dense_weight(), gram)
            assert e_white <= e_plain + 1e-9
    # And the Gram-based error is the true relative output error.
    y, y_hat = x @ linear.weight.T, x @ white.dense_weight().T
    direct = ((y - y_hat).norm() / y.norm()).item()
    assert direct == pytest.approx(e_white, rel=1e-3)


def test_parameter_count_is_r_times_m_plus_n():
    linear, _, _ = layer_and_inputs(m=40, n=30)
    low = LowRankLinear.from_linear(linear, rank=5)
    assert low.down.weight.numel() + low.up.weight.numel() == 5 * (40 + 30)
    assert saves_parameters(40, 30, 17) and not saves_parameters(40, 30, 18)  # 40·30/70 ≈ 17.1
    assert not saves_parameters(576, 576, 288)  # ratio 0.5 of a square matrix saves nothing


def test_singular_gram_still_factorises():
    linear, _, _ = layer_and_inputs()
    gram = torch.zeros(16, 16, dtype=torch.float64)
    gram[0, 0] = 1.0  # rank one: Cholesky needs the damping
    down, up = factorise(linear.weight, 4, "whitened", gram, 1e-2)
    assert torch.isfinite(up @ down).all()


def test_bad_arguments():
    linear, _, _ = layer_and_inputs()
    with pytest.raises(ValueError, match="Gram"):
        factorise(linear.weight, 4, "whitened", None)
    with pytest.raises(ValueError, match="rank"):
        factorise(linear.weight, 0)
    with pytest.raises(ValueError, match="method"):
        factorise(linear.weight, 4, "magic")


def test_replacement_keeps_shapes_and_bias():
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4))
    x = torch.randn(3, 8)
    before = model(x)
    found = find_linears(model, ("0", "2"))
    assert [n for n, _ in found] == ["0", "2"]
    for name, lin in found:
        replace_module(model, name, LowRankLinear.from_linear(lin, min(lin.in_features, lin.out_features)))
    assert isinstance(model[0], LowRankLinear) and torch.allclose(model(x), before, atol=1e-5)
    with pytest.raises(AssertionError):
        replace_module(model, "2", LowRankLinear(5, 4, 2))


def test_factor_signs_are_fixed_so_adapters_travel_between_machines(monkeypatch):
    torch.manual_seed(0)
    weight = torch.randn(24, 16)
    gram = torch.randn(40, 16).T @ torch.randn(40, 16).abs()
    gram = gram @ gram.T
    for method in ("plain", "whitened"):
        down, up = factorise(weight, 6, method, gram)
        peak = up.gather(0, up.abs().argmax(0, keepdim=True))
        assert (peak > 0).all()
        real_svd = torch.linalg.svd

        def flipped(a, full_matrices=True):  # another library's equally valid answer: every sign flipped
            U, S, Vh = real_svd(a, full_matrices=full_matrices)
            return -U, S, -Vh

        monkeypatch.setattr(torch.linalg, "svd", flipped)
        down_f, up_f = factorise(weight, 6, method, gram)
        monkeypatch.undo()
        assert torch.allclose(down_f, down, atol=1e-6) and torch.allclose(up_f, up, atol=1e-6)


@pytest.mark.parametrize("method", ["plain", "whitened"])
def test_wide_matrices_go_through_the_transpose_and_still_reconstruct(method):
    torch.manual_seed(1)
    weight = torch.randn(12, 40, dtype=torch.float64)  # out < in: factorised as its transpose
    x = torch.randn(200, 40, dtype=torch.float64)
    down, up = factorise(weight, 12, method, x.T @ x, damping=1e-12)
    assert down.shape == (12, 40) and up.shape == (12, 12)
    assert torch.allclose(up @ down, weight, atol=1e-8)
