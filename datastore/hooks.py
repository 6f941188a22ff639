"""Which decoder representation is a key, and a forward hook that captures it.

The same hook serves building (teacher-forced pass) and decoding (inside ``model.generate``), so the
keys in the store and the queries at decode time are computed by exactly the same code path.

Layer specs:

- ``"lm_head_input"`` (default): the tensor the LM head reads — the decoder's final hidden state after
  the final layer norm and, for T5 configs with ``scale_decoder_outputs`` (original T5 and models that
  tie the word embeddings), after the ``d_model ** -0.5`` rescaling. Captured by a forward pre-hook on
  ``model.get_output_embeddings()``. This is knn-box's / Khandelwal et al.'s choice.
- ``"final_norm"``: the decoder's final layer norm output, never rescaled.
- ``"block:i"``: the output hidden state of decoder block ``i`` (negative ``i`` counts from the end),
  i.e. ``decoder_hidden_states[i + 1]`` of ``output_hidden_states=True`` without the other layers' copies.
"""

from __future__ import annotations

from typing import Any

import torch

DEFAULT_LAYER = "lm_head_input"


class KeysCaptured(Exception):
    """Raised by a capture hook with ``stop=True`` to skip the rest of the forward pass (the LM head
    and later blocks are not needed while building)."""


def describe_layer(model: Any, layer: str) -> dict[str, Any]:
    """JSON-able description of ``layer`` for ``model``: spec, module name, whether rescaled."""
    module_name, kind = _resolve(model, layer)[1:]
    config = model.config
    # transformers 5 names T5's rescaling scale_decoder_outputs; 4.x applied it when embeddings were tied
    scaling = getattr(config, "scale_decoder_outputs", None)
    if scaling is None:
        scaling = config.model_type == "t5" and getattr(config, "tie_word_embeddings", False)
    scaled = bool(scaling) and layer == "lm_head_input"
    text = {
        "lm_head_input": "input of the LM head: decoder final hidden state after the final layer norm"
        + (" and the T5 d_model**-0.5 rescaling" if scaled else " (no rescaling in this config)"),
        "final_norm": "decoder final layer norm output (not rescaled)",
    }.get(layer, f"output hidden state of {module_name}")
    return {"layer": layer, "module": module_name, "hook": kind, "scaled_d_model_inv_sqrt": scaled,
            "description": text}


def _resolve(model: Any, layer: str) -> tuple[torch.nn.Module, str, str]:
    """(module, its dotted name, "pre" or "post") to hook for ``layer``."""
    if layer == "lm_head_input":
        head = model.get_output_embeddings()
        if head is None:
            raise ValueError(f"{type(model).__name__} has no output embeddings (LM head) to hook")
        return head, _name_of(model, head), "pre"
    decoder = getattr(model, "decoder", None) or (model.get_decoder() if hasattr(model, "get_decoder") else None)
    if decoder is None:
        raise ValueError(f"{type(model).__name__} has no decoder: layer {layer!r} needs an encoder-decoder model")
    if layer == "final_norm":
        norm = getattr(decoder, "final_layer_norm", None)
        if norm is None:
            raise ValueError(f"{type(decoder).__name__} has no final_layer_norm; use layer 'lm_head_input'")
        return norm, _name_of(model, norm), "post"
    if layer.startswith("block:"):
        blocks = getattr(decoder, "block", None)
        if blocks is None:
            raise ValueError(f"{type(decoder).__name__} has no .block list; use layer 'lm_head_input'")
        try:
            index = int(layer.split(":", 1)[1])
            block = blocks[index]
        except (ValueError, IndexError) as error:
            raise ValueError(
                f"layer {layer!r}: the decoder has {len(blocks)} blocks, use block:0 .. block:{len(blocks) - 1}"
            ) from error
        return block, _name_of(model, block), "post"
    raise ValueError(f"unknown layer {layer!r}: use 'lm_head_input', 'final_norm' or 'block:<i>'")


def _name_of(model: torch.nn.Module, module: torch.nn.Module) -> str:
    for name, candidate in model.named_modules():
        if candidate is module:
            return name
    return type(module).__name__


class StateCapture:
    """Context manager that hooks ``layer`` of ``model`` and keeps the last tensor it saw.

    ``state``: (batch, seq, dim) tensor from the latest forward pass, or None before the first.
    ``stop=True`` raises :class:`KeysCaptured` from the hook to cut the forward pass short.
    """

    def __init__(self, model: Any, layer: str = DEFAULT_LAYER, stop: bool = False) -> None:
        self.module, self.module_name, self.kind = _resolve(model, layer)
        self.layer = layer
        self.stop = stop
        self.state: torch.Tensor | None = None
        self._handle: Any = None

    def _pre_hook(self, module: torch.nn.Module, args: tuple) -> None:
        self.state = args[0]
        if self.stop:
            raise KeysCaptured

    def _post_hook(self, module: torch.nn.Module, args: tuple, output: Any) -> None:
        self.state = output[0] if isinstance(output, (tuple, list)) else output
        if self.stop:
            raise KeysCaptured

    def last_position(self) -> torch.Tensor:
        """(batch, dim) state of the last position of the latest forward pass (with the key/value cache
        that is the only position; without it the whole prefix was recomputed)."""
        if self.state is None:
            raise RuntimeError(f"no decoder state captured from {self.module_name} yet: was the hook removed?")
        return self.state[:, -1, :] if self.state.dim() == 3 else self.state

    def __enter__(self) -> "StateCapture":
        if self.kind == "pre":
            self._handle = self.module.register_forward_pre_hook(self._pre_hook)
        else:
            self._handle = self.module.register_forward_hook(self._post_hook)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.state = None
