"""Depth pruning: keep the first N decoder layers of a model and drop the ones above them.

A decoder classifier reads its last token's state after the last layer, h_L, through the final norm
and the head: logits = W_head · norm(h_L). Keeping N < L layers serves logits = W_head · norm(h_N):
the same embedding, the same first N layers, bit for bit, and no work at all for layers N+1…L. Every
token's cost falls by (L−N)/L of the layers' multiply-adds, at batch size one and in batches alike,
which no rank cut of the remaining matrices changes. The state h_N was not trained to be read by
the head, so a pruned model must be healed (the head and the adapters retrained, distilled from the
full model), as dropping the top layers of a fine-tuned encoder is (Sajjad et al., "On the effect of
dropping layers of pre-trained transformer models", Computer Speech & Language 2023).

The surgery follows peft's way: find the one ``nn.ModuleList`` of decoder layers by name, assert it
is the config's, replace it by its first N entries, and cut the config's per-layer lists with it so
that attention masks and rotary tables still match layer by layer.
"""

from __future__ import annotations

from torch import nn


def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The name and the list of the model's decoder layers: the ``nn.ModuleList`` called ``layers``
    whose length is the config's ``num_hidden_layers``."""
    count = model.config.num_hidden_layers
    found = [(name, module) for name, module in model.named_modules()
             if name.rsplit(".", 1)[-1] == "layers" and isinstance(module, nn.ModuleList) and len(module) == count]
    assert len(found) == 1, f"expected one list of {count} decoder layers, found {[n for n, _ in found]}"
    return found[0]


def keep_layers(model: nn.Module, keep: int) -> dict:
    """Drop every decoder layer above the first ``keep`` (in place). Returns the accounting:
    ``{"layers_before", "layers_after", "params_removed"}``."""
    name, layers = decoder_layers(model)
    before = len(layers)
    if not 1 <= keep <= before:
        raise ValueError(f"keep layers must be in [1, {before}] for this model, not {keep}")
    removed = sum(p.numel() for layer in layers[keep:] for p in layer.parameters())
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, leaf, nn.ModuleList(list(layers)[:keep]))
    configs = {id(c): c for c in (model.config, getattr(model.config, "text_config", None),
                                   getattr(parent, "config", None)) if c is not None}
    for config in configs.values():
        if getattr(config, "num_hidden_layers", None) == before:
            config.num_hidden_layers = keep
            if isinstance(getattr(config, "layer_types", None), list) and len(config.layer_types) == before:
                config.layer_types = config.layer_types[:keep]
    assert len(getattr(parent, leaf)) == keep == model.config.num_hidden_layers
    return {"layers_before": before, "layers_after": keep, "params_removed": removed}
