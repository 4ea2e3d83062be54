"""Low-rank factorisation of linear layers by truncated SVD.

A linear layer y = W x + b with W ∈ ℝ^{m×n} (m = out_features, n = in_features) is replaced by

    W ≈ U_r S_r V_rᵀ = (U_r S_r^½)(S_r^½ V_rᵀ) = B A,   A ∈ ℝ^{r×n} ("down"), B ∈ ℝ^{m×r} ("up"),

stored as two plain ``nn.Linear`` layers, so y = B (A x) + b. It keeps r(m+n) parameters instead of
mn, which saves only when r < mn/(m+n) (for a square matrix: r < n/2).

* ``plain`` truncates the SVD of W itself: the best rank-r W in Frobenius norm, blind to the inputs.
* ``whitened`` (activation-aware, as in SVD-LLM) minimises the error on the layer's *outputs* over
  calibration inputs X: with the Gram matrix XᵀX + λI = L Lᵀ (Cholesky; λ = damping × mean
  diagonal keeps it positive definite), truncate the SVD of W L = U S Vᵀ and un-whiten:
  W' = U_r S_r V_rᵀ L⁻¹. Then ‖(W − W')Xᵀ‖_F is minimal among rank-r matrices.

The relative output error ‖(W − W')Xᵀ‖_F / ‖W Xᵀ‖_F is computed from the Gram matrix G = XᵀX as
√(tr(Δ G Δᵀ) / tr(W G Wᵀ)), so X itself never has to be kept.
"""

from __future__ import annotations

import math

import torch
from torch import nn

METHODS = ("plain", "whitened")


class LowRankLinear(nn.Module):
    """Drop-in replacement for ``nn.Linear``: ``up(down(x))``, two plain Linear children."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.up = nn.Linear(rank, out_features, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int, method: str = "plain", gram: torch.Tensor | None = None,
                    damping: float = 1e-2) -> "LowRankLinear":
        """Factorise ``linear`` at ``rank``; ``whitened`` needs the Gram matrix of its inputs."""
        down, up = factorise(linear.weight.detach(), rank, method, gram, damping)
        new = cls(linear.in_features, linear.out_features, rank, linear.bias is not None,
                  device=linear.weight.device, dtype=linear.weight.dtype)
        with torch.no_grad():
            new.down.weight.copy_(down)
            new.up.weight.copy_(up)
            if linear.bias is not None:
                new.up.bias.copy_(linear.bias)
        return new

    def dense_weight(self) -> torch.Tensor:
        return self.up.weight @ self.down.weight


def saves_parameters(m: int, n: int, rank: int) -> bool:
    """True when a rank-``rank`` factor of an m×n matrix has fewer parameters than the matrix."""
    return rank * (m + n) < m * n


def break_even_rank(m: int, n: int) -> int:
    """The largest rank that still saves parameters: ⌈mn/(m+n)⌉ − 1."""
    return math.ceil(m * n / (m + n)) - 1


def useful_rank(m: int, n: int, min_saving: float = 0.0) -> int:
    """The largest rank worth factorising an m×n matrix at: its factors cut at least ``min_saving`` of
    the matrix's parameters, and as many of its multiply-adds: r(m+n) ≤ (1 − s)·mn (0: any saving,
    :func:`break_even_rank`). Two small matrix products take longer per multiply-add than one large
    one, so a matrix factorised close to break-even keeps its time and adds a product (measured in
    docs/benchmarks.md); 0 means no rank is: the matrix stays dense."""
    return min(break_even_rank(m, n), math.floor((1 - min_saving) * m * n / (m + n) + 1e-9))  # exact at the boundary


def _cholesky(gram: torch.Tensor, damping: float) -> torch.Tensor:
    """Lower-triangular L with L Lᵀ = G + λI; λ grows tenfold until the factorisation succeeds."""
    scale = float(gram.diagonal().mean()) or 1.0
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    for attempt in range(8):
        lam = damping * scale * (10 ** attempt)
        L, info = torch.linalg.cholesky_ex(gram + lam * eye)
        if int(info) == 0:
            return L
    raise RuntimeError("Gram matrix could not be made positive definite")


def _svd(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD; a wide matrix is factorised through its transpose (LAPACK is 2.5–3× slower on wide
    ones: measured 109 s against 43 s for 4096×14336 against 14336×4096 on this project's CPU)."""
    if a.shape[0] < a.shape[1]:
        V, S, Uh = torch.linalg.svd(a.T, full_matrices=False)
        return Uh.T, S, V.T
    return torch.linalg.svd(a, full_matrices=False)


def _whitener(weight: torch.Tensor, method: str, gram: torch.Tensor | None, damping: float) -> torch.Tensor | None:
    """L with L Lᵀ = XᵀX + λI for ``whitened`` (None for ``plain``), in float64 on the weight's device."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if method == "plain":
        return None
    if gram is None:
        raise ValueError("whitened SVD needs the Gram matrix of the layer's inputs (calibration)")
    return _cholesky(gram.to(device=weight.device, dtype=torch.float64), damping)


def spectrum(weight: torch.Tensor, method: str = "plain", gram: torch.Tensor | None = None,
             damping: float = 1e-2) -> torch.Tensor:
    """The singular values σ of W (plain) or W L (whitened), largest first, in float64.

    Truncating to rank r loses Σ_{j>r} σ_j² of ‖W Xᵀ‖² (whitened; of ‖W‖_F² for plain), so the
    relative output error at rank r is √(Σ_{j>r} σ_j² / Σ_j σ_j²): what rank allocation trades off."""
    W = weight.detach().to(torch.float64)
    L = _whitener(W, method, gram, damping)
    return torch.linalg.svdvals(W if L is None else W @ L)


def factorise(weight: torch.Tensor, rank: int, method: str = "plain", gram: torch.Tensor | None = None,
              damping: float = 1e-2) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) with B A ≈ W, A: r×n ("down"), B: m×r ("up"); returned in W's dtype and on its device.

    Computed in float64 on W's device (a GPU factorises there). Each singular pair's sign is fixed
    (the largest entry of each column of U is positive), so the arbitrary signs an SVD routine
    returns do not change the factors, or LoRA adapters trained on them, from one machine to another
    (up to round-off; near-equal singular values can still mix their vectors).
    """
    m, n = weight.shape
    W = weight.detach().to(torch.float64)
    L = _whitener(W, method, gram, damping)
    if not 1 <= rank <= min(m, n):
        raise ValueError(f"rank {rank} out of range 1..{min(m, n)} for a {m}×{n} matrix")
    if L is None:
        U, S, Vh = _svd(W)
        right = Vh[:rank]
    else:
        U, S, Vh = _svd(W @ L)
        # right = V_rᵀ L⁻¹, i.e. solve Lᵀ Z = V_r for Z and transpose.
        right = torch.linalg.solve_triangular(L.T, Vh[:rank].T, upper=True).T
    U = U[:, :rank]
    sign = torch.sign(U.gather(0, U.abs().argmax(0, keepdim=True))).squeeze(0)
    sign[sign == 0] = 1
    root = S[:rank].sqrt()
    down = (sign * root)[:, None] * right
    up = U * (sign * root)[None, :]
    return down.to(weight.dtype), up.to(weight.dtype)


def output_error(weight: torch.Tensor, approx: torch.Tensor, gram: torch.Tensor) -> float:
    """Relative error of the layer's outputs on the calibration inputs: √(tr(ΔGΔᵀ)/tr(WGWᵀ))."""
    W = weight.detach().to(torch.float64)
    D = W - approx.detach().to(device=W.device, dtype=torch.float64)
    G = gram.to(device=W.device, dtype=torch.float64)
    num = torch.einsum("ij,jk,ik->", D, G, D)
    den = torch.einsum("ij,jk,ik->", W, G, W)
    return float((num / den).clamp(min=0).sqrt()) if den > 0 else 0.0


def find_linears(model: nn.Module, names: tuple[str, ...], skip: tuple[str, ...] = ()) -> list[tuple[str, nn.Linear]]:
    """Every ``nn.Linear`` whose last name component is in ``names`` and whose full name contains
    none of ``skip``; listed first, replaced afterwards (model surgery the peft way)."""
    found = []
    for full, module in model.named_modules():
        leaf = full.rsplit(".", 1)[-1]
        if leaf in names and isinstance(module, nn.Linear) and not any(s in full for s in skip):
            found.append((full, module))
    return found


def replace_module(model: nn.Module, full_name: str, new: nn.Module) -> None:
    """``setattr`` on the parent; shapes must match the module being replaced."""
    parent_name, _, leaf = full_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, leaf)
    assert (old.in_features, old.out_features) == (new.in_features, new.out_features), full_name
    setattr(parent, leaf, new)


def low_rank_skeleton(model: nn.Module, ranks: dict[str, int]) -> None:
    """Replace the named Linear layers by empty :class:`LowRankLinear` of the given ranks
    (before loading a saved compressed state dict)."""
    for full, rank in ranks.items():
        old = model.get_submodule(full)
        new = LowRankLinear(old.in_features, old.out_features, rank, old.bias is not None,
                            device=old.weight.device, dtype=old.weight.dtype)
        replace_module(model, full, new)
