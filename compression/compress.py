"""Compressing a whole model: choose layers and ranks, calibrate, factorise, account, save and load.

A compression is fully described by a *recipe* (decoder layers kept, method, targets, rank rule,
skip list, damping and the calibration messages' fingerprint) plus the ranks it chose. A trained
model folder stores the recipe; loading re-applies it to the base, using a cache of the factorised
weights keyed by the recipe, so a compressed classifier ships as a few MB of adapter rather than a
full model.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from compression.calibration import collect_grams, read_texts
from compression.depth import keep_layers
from compression.svd import (METHODS, LowRankLinear, find_linears, low_rank_skeleton, output_error, replace_module,
                             spectrum, useful_rank)

TARGET_GROUPS = {
    "attn": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "mlp": ("gate_proj", "up_proj", "down_proj"),
}
MODULE_NAMES = tuple(n for names in TARGET_GROUPS.values() for n in names)
RECIPE_FILE = "compression.json"
WEIGHTS_FILE = "low_rank.safetensors"


def _resolve(path: str, root: str | Path | None) -> Path:
    """A calibration file: as given when it exists, else relative to ``root`` (recipes record the
    paths they were given, so a project can keep them relative to its own folder)."""
    p = Path(path)
    return p if p.is_absolute() or p.exists() or root is None else Path(root) / p


@dataclass
class CompressArgs:
    method: str = "whitened"
    """plain (truncated SVD of W) or whitened (activation-aware, SVD-LLM)."""
    targets: str = "attn"
    """Layers to factorise: attn (q/k/v/o), mlp (gate/up/down), attn+mlp, or names joined by + (q_proj+o_proj)."""
    rank_ratio: float | None = 0.25
    """Rank as a share of min(m, n) of each matrix (the research used 0.25)."""
    rank: int | None = None
    """Absolute rank for every matrix (overrides --rank-ratio)."""
    param_share: float | None = None
    """Keep this share of each matrix's parameters: r = share·mn/(m+n) (overrides the ratio and rank)."""
    params_keep: float | None = None
    """Keep this share of all targeted parameters, ranks chosen per matrix from their whitened truncation
    errors (overrides the others)."""
    min_saving: float = 0.0
    """Factorise a matrix only at a rank that cuts at least this share of its parameters and multiply-adds
    (``compression.svd.useful_rank``); at a higher rank it stays dense. 0: any saving."""
    keep_layers: int | None = None
    """Keep only the first N decoder layers and drop those above (``compression.depth``), before
    factorising what is left; healing retrains the head on layer N. None: all layers."""
    skip: list[str] = field(default_factory=list)
    """Leave layers dense whose name contains any of these (e.g. layers.0.,layers.17.)."""
    calib: list[str] = field(default_factory=list)
    """Calibration text files (CSV or JSONL with a text column); needed by whitened SVD and the errors."""
    calib_split: str | None = "train"
    """Only calibrate on rows of this split, when the files have a split column."""
    calib_size: int = 256
    """Number of calibration messages (a seeded sample)."""
    damping: float = 1e-2
    """Whitening damping λ as a share of the Gram matrix's mean diagonal."""
    seed: int = 0
    """Seed for sampling the calibration messages."""

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}")
        parts = self.targets.split("+")
        if not parts or any(p not in TARGET_GROUPS and p not in MODULE_NAMES for p in parts):
            raise ValueError(f"targets must be attn, mlp, attn+mlp or module names joined by + "
                             f"({', '.join(MODULE_NAMES)})")
        if self.rank_ratio is not None and not 0 < self.rank_ratio <= 1:
            raise ValueError("rank ratio must be in (0, 1]")
        if self.param_share is not None and not 0 < self.param_share <= 1:
            raise ValueError("param share must be in (0, 1]")
        if self.params_keep is not None and not 0 < self.params_keep < 1:
            raise ValueError("params keep must be in (0, 1)")
        if self.rank is not None and self.rank < 1:
            raise ValueError("rank must be ≥ 1")
        if self.rank_ratio is None and self.rank is None and self.param_share is None and self.params_keep is None:
            raise ValueError("give --rank-ratio, --rank, --param-share or --params-keep")
        if self.keep_layers is not None and self.keep_layers < 1:
            raise ValueError("keep layers must be ≥ 1")
        if self.calib_size < 1:
            raise ValueError("calib size must be ≥ 1")
        if not 0 <= self.min_saving < 1:
            raise ValueError("min saving must be in [0, 1)")

    @property
    def layer_names(self) -> tuple[str, ...]:
        names = (n for part in self.targets.split("+") for n in TARGET_GROUPS.get(part, (part,)))
        return tuple(dict.fromkeys(names))

    def rank_for(self, m: int, n: int) -> int:
        """The rank this rule gives an m×n matrix (before the no-saving check)."""
        if self.param_share is not None:
            return max(1, int(self.param_share * m * n / (m + n)))
        if self.rank is not None:
            return min(self.rank, min(m, n))
        return max(1, round(self.rank_ratio * min(m, n)))


def calibration_texts(args: CompressArgs, root: str | Path | None = None) -> tuple[list[str], str]:
    """A seeded sample of calibration messages and a fingerprint of exactly what was read."""
    if not args.calib:
        raise ValueError("give calibration files (--calib): the messages whose activations compression keeps")
    texts = sorted({t for path in args.calib for t in read_texts(_resolve(path, root), args.calib_split)})
    random.Random(args.seed).shuffle(texts)
    texts = texts[: args.calib_size]
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    return texts, digest


def _module_type(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def allocate_ranks(spectra: dict[str, torch.Tensor], shapes: dict[str, tuple[int, int]], keep: float,
                   min_saving: float = 0.0) -> dict[str, int]:
    """Ranks per matrix that keep at most ``keep`` of the matrices' parameters and lose the least output.

    Matrix i at rank r loses e_i(r)² = Σ_{j>r} σ_ij² / Σ_j σ_ij² of its (whitened) output energy; each
    extra rank costs m_i + n_i parameters and wins back σ_{i,r+1}² / Σ_j σ_ij². Greedily buying the rank
    with the best gain per parameter minimises Σ_i e_i(r_i)² under the budget as long as every step is
    one rank (the gains of one matrix fall as its rank grows, so the greedy order is the optimal one).
    Every matrix keeps rank ≥ 1; one that reaches its highest useful rank
    (:func:`~compression.svd.useful_rank`: break-even, or a rank that still cuts ``min_saving`` of its
    multiply-adds) is bought back whole: that next unit costs the rest of its parameters and wins back
    the rest of its energy, a larger step taken by the same greedy rule (a heuristic there, not an
    optimum). A matrix with no useful rank stays dense and its parameters count against the budget.
    """
    import heapq

    total = sum(m * n for m, n in shapes.values())
    budget = keep * total
    ceiling = {name: useful_rank(m, n, min_saving) for name, (m, n) in shapes.items()}
    rank = {name: 1 if ceiling[name] >= 1 else min(shapes[name]) for name in spectra}
    spent = sum(m + n if ceiling[name] >= 1 else m * n for name, (m, n) in shapes.items())
    if spent > budget:
        raise ValueError(f"keeping {keep:.0%} of the parameters is less than rank 1 for every matrix "
                         "(and the whole of those no rank saves enough of)")
    energy = {name: (s.double() ** 2 / (s.double() ** 2).sum()) for name, s in spectra.items()}

    def next_unit(name):
        m, n = shapes[name]
        r, top = rank[name], ceiling[name]
        if r > top:
            return None  # dense already
        gain, cost = (float(energy[name][r]), m + n) if r < top else (float(energy[name][r:].sum()), m * n - r * (m + n))
        return (-gain / max(cost, 1), name, cost)

    heap = [unit for name in sorted(spectra) if (unit := next_unit(name))]
    heapq.heapify(heap)
    while heap:
        _, name, cost = heapq.heappop(heap)
        if spent + cost > budget:
            continue  # this matrix's next rank does not fit; cheaper ones elsewhere may
        spent += cost
        m, n = shapes[name]
        rank[name] = rank[name] + 1 if rank[name] < ceiling[name] else min(m, n)
        if unit := next_unit(name):
            heapq.heappush(heap, unit)
    return rank


def plan_ranks(layers: list[tuple[str, nn.Linear]], grams: dict[str, torch.Tensor], args: CompressArgs) -> dict[str, int]:
    """The rank each layer gets by ``args``' rule (a rank that saves nothing leaves the layer dense)."""
    if args.params_keep is None:
        return {name: args.rank_for(lin.out_features, lin.in_features) for name, lin in layers}
    spectra = {name: spectrum(lin.weight, args.method, grams[name], args.damping) for name, lin in layers}
    return allocate_ranks(spectra, {name: (lin.out_features, lin.in_features) for name, lin in layers},
                          args.params_keep, args.min_saving)


def compress_model(model: nn.Module, tokenizer, args: CompressArgs, progress=None,
                   calib_root: str | Path | None = None, fixed_ranks: dict[str, int] | None = None) -> dict:
    """Factorise ``model`` in place; returns the recipe and the accounting report. Relative
    calibration paths that do not exist from here are read from ``calib_root``. ``fixed_ranks`` (a
    recorded recipe's) are used as they are; the targeted layers they do not name stay dense."""
    from tqdm.auto import tqdm

    started = time.perf_counter()
    depth = keep_layers(model, args.keep_layers) if args.keep_layers else None
    layers = find_linears(model, args.layer_names, tuple(args.skip))
    if not layers:
        raise ValueError(f"no layers named {', '.join(args.layer_names)} in this model")
    texts, fingerprint = calibration_texts(args, calib_root)
    grams = collect_grams(model, tokenizer, texts, layers,
                          progress=(lambda f: progress(0.2 * f, "calibrating")) if progress else None)
    calib_time = time.perf_counter() - started
    planned = ({name: fixed_ranks.get(name, min(lin.out_features, lin.in_features)) for name, lin in layers}
               if fixed_ranks is not None else plan_ranks(layers, grams, args))
    rows, ranks = [], {}
    for i, (name, linear) in enumerate(tqdm(layers, desc=f"{args.method} SVD", leave=False)):
        m, n = linear.out_features, linear.in_features
        rank = planned[name]
        row = {"name": name, "type": _module_type(name), "shape": [m, n], "rank": rank,
               "params_before": m * n, "dtype_bytes": linear.weight.element_size()}
        if rank > (useful := useful_rank(m, n, args.min_saving)):
            row.update(params_after=m * n, dense=True, error=0.0,
                       note=f"left dense: rank {rank} above {useful}, the highest that saves"
                            + (f" {args.min_saving:.0%}" if args.min_saving else ""))
        else:
            new = LowRankLinear.from_linear(linear, rank, args.method, grams[name], args.damping)
            row.update(params_after=rank * (m + n), dense=False,
                       error=output_error(linear.weight, new.dense_weight(), grams[name]))
            replace_module(model, name, new)
            ranks[name] = rank
        rows.append(row)
        if progress:
            progress(0.2 + 0.8 * (i + 1) / len(layers), "factorising")
    recipe = {**asdict(args), "calib_fingerprint": fingerprint, "ranks": ranks, "factors": FACTORS_VERSION}
    return {"recipe": recipe, "report": accounting(model, rows, time.perf_counter() - started, calib_time, depth)}


def accounting(model: nn.Module, rows: list[dict], seconds: float, calib_seconds: float,
               depth: dict | None = None) -> dict:
    """Parameters and bytes before/after per module type and in total (the dropped layers' among
    those before), errors, time."""
    by_type: dict[str, dict] = {}
    for r in rows:
        t = by_type.setdefault(r["type"], {"params_before": 0, "params_after": 0, "bytes_before": 0,
                                           "bytes_after": 0, "layers": 0, "dense": 0, "errors": []})
        t["params_before"] += r["params_before"]
        t["params_after"] += r["params_after"]
        t["bytes_before"] += r["params_before"] * r["dtype_bytes"]
        t["bytes_after"] += r["params_after"] * r["dtype_bytes"]
        t["layers"] += 1
        t["dense"] += int(r["dense"])
        t["errors"].append(r["error"])
    for t in by_type.values():
        errors = t.pop("errors")
        t["mean_error"] = sum(errors) / len(errors)
        t["max_error"] = max(errors)
    total_after = sum(p.numel() for p in model.parameters())
    saved = sum(r["params_before"] - r["params_after"] for r in rows) + (depth["params_removed"] if depth else 0)
    bytes_per = next(model.parameters()).element_size()
    return {
        "layers": rows,
        "by_type": by_type,
        "model_params_before": total_after + saved,
        "model_params_after": total_after,
        "model_bytes_before": (total_after + saved) * bytes_per,
        "model_bytes_after": total_after * bytes_per,
        "dense_layers_left": [r["name"] for r in rows if r["dense"]],
        "depth": depth,
        "seconds": seconds,
        "calibration_seconds": calib_seconds,
    }


def format_accounting(report: dict) -> str:
    lines = [f"{'module':<12}{'layers':>7}{'dense':>7}{'params before':>15}{'params after':>14}"
             f"{'MB before':>11}{'MB after':>10}{'mean err':>10}{'max err':>9}"]
    for name, t in report["by_type"].items():
        lines.append(f"{name:<12}{t['layers']:>7}{t['dense']:>7}{t['params_before']:>15,}{t['params_after']:>14,}"
                     f"{t['bytes_before'] / 1e6:>11.1f}{t['bytes_after'] / 1e6:>10.1f}"
                     f"{t['mean_error']:>10.4f}{t['max_error']:>9.4f}")
    lines.append(f"{'model':<12}{'':>14}{report['model_params_before']:>15,}{report['model_params_after']:>14,}"
                 f"{report['model_bytes_before'] / 1e6:>11.1f}{report['model_bytes_after'] / 1e6:>10.1f}")
    if depth := report.get("depth"):
        lines.append(f"decoder layers kept: {depth['layers_after']} of {depth['layers_before']} "
                     f"({depth['params_removed']:,} parameters dropped with the others)")
    lines.append(f"time {report['seconds']:.1f} s (calibration {report['calibration_seconds']:.1f} s)")
    if report["dense_layers_left"]:
        lines.append(f"{len(report['dense_layers_left'])} layer(s) left dense: that rank would not save parameters")
    ranks: dict[str, list[str]] = {}
    for r in report["layers"]:
        ranks.setdefault(r["type"], []).append("dense" if r["dense"] else str(r["rank"]))
    lines += ["ranks, layer by layer:"] + [f"  {name:<10} {' '.join(values)}" for name, values in ranks.items()]
    return "\n".join(lines)


# --- saving, loading and re-applying -------------------------------------------------------------

FACTORS_VERSION = 2
"""Bumped when the factors a recipe gives change (2: singular-vector signs fixed). Recipes record
it; one from another version is only usable from the cache, never recomputed under adapters that
were trained on other factors. (Recipes written before the field existed count as version 2.)"""


def recipe_key(base: str, recipe: dict) -> str:
    payload = json.dumps({"base": base, "factors": FACTORS_VERSION,
                          **{k: v for k, v in recipe.items() if k != "calib"}}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def low_rank_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v.detach().cpu().contiguous() for name, module in model.named_modules()
            if isinstance(module, LowRankLinear) for k, v in module.state_dict().items()}


def load_low_rank_state(model: nn.Module, recipe: dict, state: dict[str, torch.Tensor]) -> None:
    """Give ``model`` the recipe's shape (its decoder layers kept, the low-rank skeleton of its ranks)
    and load the factorised weights; every key must match."""
    if recipe.get("keep_layers"):
        keep_layers(model, recipe["keep_layers"])
    low_rank_skeleton(model, recipe["ranks"])
    expected = set(low_rank_state(model))
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise ValueError(f"compressed weights do not fit: missing {sorted(missing)[:3]}, "
                         f"unexpected {sorted(unexpected)[:3]}")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in state.items():
            params[k].copy_(v)


def cached_path(cache: Path, base: str, recipe: dict) -> Path:
    return Path(cache) / f"{recipe_key(base, recipe)}.safetensors"


def store_in_cache(model: nn.Module, cache: Path, base: str, recipe: dict) -> Path:
    """Save the factorised layers of ``model`` under the recipe's key (atomically)."""
    from safetensors.torch import save_file

    path = cached_path(cache, base, recipe)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.partial")  # parallel sweeps may store the same recipe
    save_file(low_rank_state(model), str(tmp))
    tmp.rename(path)
    return path


def apply_recipe(model: nn.Module, tokenizer, base: str, recipe: dict, cache: Path,
                 calib_root: str | Path | None = None) -> None:
    """Compress ``model`` as ``recipe`` says, from the cache when this recipe was computed before."""
    from safetensors.torch import load_file

    path = cached_path(cache, base, recipe)
    if path.exists():
        load_low_rank_state(model, recipe, load_file(str(path)))
        return
    if recipe.get("factors", FACTORS_VERSION) != FACTORS_VERSION:
        raise ValueError("this model was compressed by an older version of the factorisation and its "
                         "factors are no longer cached; rebuild it")
    args = CompressArgs(**{k: v for k, v in recipe.items() if k in CompressArgs.__dataclass_fields__})
    result = compress_model(model, tokenizer, args, calib_root=calib_root, fixed_ranks=recipe["ranks"])
    if result["recipe"]["calib_fingerprint"] != recipe["calib_fingerprint"]:
        raise ValueError("the calibration data changed since this model was compressed; "
                         "recompress it or restore the calibration files")
    if result["recipe"]["ranks"] != recipe["ranks"]:
        raise ValueError("re-applying the compression gave other ranks than recorded")
    store_in_cache(model, cache, base, recipe)


def save_compressed(model: nn.Module, tokenizer, out: str | Path, base: str, result: dict) -> Path:
    """A compressed model folder: the factorised layers, the tokenizer and ``compression.json``
    (base, recipe, accounting). The rest of the weights are the base's, which loading reuses."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(low_rank_state(model), str(out / WEIGHTS_FILE))
    tokenizer.save_pretrained(out)
    (out / RECIPE_FILE).write_text(json.dumps({"base": base, "recipe": result["recipe"],
                                               "report": result["report"]}, indent=2))
    return out


def read_recipe(folder: str | Path) -> dict | None:
    """``compression.json`` of a compressed model folder, or None for any other base."""
    path = Path(folder) / RECIPE_FILE
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
        info["base"], info["recipe"]["ranks"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is damaged ({err})") from None
    return info


def load_compressed_weights(model: nn.Module, folder: str | Path, recipe: dict) -> None:
    from safetensors.torch import load_file

    load_low_rank_state(model, recipe, load_file(str(Path(folder) / WEIGHTS_FILE)))
