"""Decoding without needless copies: what ``Translator`` passes to every ``model.generate`` call.

1. The decoder's self-attention key/value cache lives in preallocated buffers (:class:`GrowingLayer`):
   transformers' ``DynamicLayer`` appends each step with ``torch.cat`` -- a fresh copy of the whole cache
   per step and layer -- and a beam reorder allocates yet another copy. Here a step is written in place
   and a reorder gathers into a spare buffer that then swaps with the first. Greedy and beam search.

In beam search each input is expanded to ``num_beams`` decoder rows, and every row of an input carries
the same cross-attention keys and values (one encoder output repeated per beam). transformers' default
decoding treats them as independent rows:

2. after every step it reorders the whole key/value cache to the surviving beams, cross-attention
   included -- a copy of (batch*beams, heads, source length, d_kv) per layer that changes nothing
   (:func:`beam_search_cache` skips it);
3. every step's cross-attention reads each beam's own copy of the source keys and values, so the
   memory traffic is ``num_beams`` times what is needed (:func:`shared_cross_attention` attends the
   ``num_beams`` queries of an input to one copy, as one matrix product per input and head).

On this CPU, beam 5, 32 ChEBI-20 test rows, one thread (the 1,100-step model): text2mol 15.3 s with
transformers' own beam search -> 9.6 s with (2) and (3) (1.6x); mol2text 28.0 s -> 11.5 s (2.4x); (2)
alone gave 12.4 s and 13.8 s. The beams were the same (32/32); (3) changes scores by float rounding only
(3e-7 there), which the tests bound. (1) is exact: the same numbers in the same order.

All three reach into transformers' internals (``DynamicLayer``, ``EncoderDecoderCache.reorder_cache``, the
attention interface, ``config._attn_implementation``, ``generate``'s ``cache`` argument), which change
between minor versions, so fast decoding runs on the one minor it is tested with,
:data:`TRANSFORMERS_MINOR` (setup.cfg pins the same), and :func:`fast_decoding` raises naming the fix on any
other.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator, Sequence

ATTENTION_NAME = "t2m_beam_shared_cross"
# the transformers minor version fast decoding is tested with; setup.cfg's install_requires pins the same
# (transformers>=5.25,<5.26) and tests/test_fast_decoding.py checks both against the installed one
TRANSFORMERS_MINOR = (5, 25)


def transformers_pin() -> str:
    """The requirement that installs :data:`TRANSFORMERS_MINOR`: ``transformers>=5.25,<5.26``."""
    major, minor = TRANSFORMERS_MINOR
    return f"transformers>={major}.{minor},<{major}.{minor + 1}"


def check_transformers_version(version: str | None = None) -> None:
    """Raise ``RuntimeError`` naming the fix when ``version`` (None: the installed transformers') is not of
    the minor :data:`TRANSFORMERS_MINOR` that fast decoding is tested with."""
    from packaging.version import Version

    if version is None:
        import transformers

        version = transformers.__version__
    if Version(version).release[:2] != TRANSFORMERS_MINOR:
        major, minor = TRANSFORMERS_MINOR
        raise RuntimeError(
            f"t2m.decoding.fast patches transformers internals and is tested with transformers {major}.{minor}.x, "
            f"but transformers {version} is installed: install the tested one (pip install '{transformers_pin()}', "
            "as setup.cfg pins it), or, to move t2m to this transformers, run tests/test_translate.py under it "
            "and change TRANSFORMERS_MINOR in t2m/decoding/fast.py and the pin in setup.cfg together")


@functools.lru_cache(maxsize=None)
def _growing_layer_class() -> type:
    """:class:`GrowingLayer`, defined on first use so that importing this module does not import
    transformers."""
    import torch
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        """A ``DynamicLayer`` whose keys and values (batch, heads, length, d_kv) are views of buffers
        grown ``CHUNK`` positions at a time: :meth:`update` writes the new positions in place and
        :meth:`reorder_cache` gathers the rows into a spare pair of buffers, then swaps. The tensors it
        returns hold the same numbers as ``DynamicLayer``'s."""

        CHUNK = 32

        def lazy_initialization(self, key_states, value_states) -> None:
            super().lazy_initialization(key_states, value_states)
            self._buffers: list | None = None  # [keys, values, spare keys, spare values]
            self._length = 0

        def _grow(self, key_states, value_states, length: int) -> None:
            capacity = -(-length // self.CHUNK) * self.CHUNK
            buffers = []
            for like in (key_states, value_states, key_states, value_states):
                shape = (*like.shape[:-2], capacity, like.shape[-1])
                buffers.append(torch.empty(shape, dtype=like.dtype, device=like.device))
            if self._length:
                buffers[0][..., : self._length, :] = self.keys
                buffers[1][..., : self._length, :] = self.values
            self._buffers = buffers

        def _adopt(self) -> None:
            """Take ``self.keys`` / ``self.values`` (set by a parent method) as the new contents."""
            self._length = self.keys.shape[-2] if self.keys is not None and self.keys.dim() == 4 else 0
            self._buffers = None
            if self._length:
                self._grow(self.keys, self.values, self._length)
                self._views()

        def _views(self) -> None:
            self.keys = self._buffers[0][..., : self._length, :]
            self.values = self._buffers[1][..., : self._length, :]

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            end = self._length + key_states.shape[-2]
            if (self._buffers is None or end > self._buffers[0].shape[-2]
                    or self._buffers[0].shape[:-2] != key_states.shape[:-2]):
                self._grow(key_states, value_states, end)
            self._buffers[0][..., self._length : end, :] = key_states
            self._buffers[1][..., self._length : end, :] = value_states
            self._length = end
            self._views()
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self._length if self.is_initialized else 0

        def reorder_cache(self, beam_idx) -> None:
            if not self._length:
                return
            keys, values, spare_keys, spare_values = self._buffers
            index = beam_idx.to(keys.device)
            torch.index_select(keys[..., : self._length, :], 0, index, out=spare_keys[..., : self._length, :])
            torch.index_select(values[..., : self._length, :], 0, index, out=spare_values[..., : self._length, :])
            self._buffers = [spare_keys, spare_values, keys, values]
            self._views()

        def reset(self) -> None:
            super().reset()
            self._buffers, self._length = None, 0

        def crop(self, tokens_to_remove: int) -> None:
            super().crop(tokens_to_remove)
            if self.is_initialized:
                self._adopt()

        def batch_repeat_interleave(self, repeats: int) -> None:
            super().batch_repeat_interleave(repeats)
            if self.is_initialized:
                self._adopt()

        def batch_select_indices(self, indices) -> None:
            super().batch_select_indices(indices)
            if self.is_initialized:
                self._adopt()

    return GrowingLayer


def growing_cache(model: Any) -> Any:
    """A fresh ``DynamicCache`` of :class:`GrowingLayer` s, one per decoder layer of ``model``."""
    from transformers.cache_utils import DynamicCache

    config = model.config.get_text_config(decoder=True)
    layer = _growing_layer_class()
    cache = DynamicCache(config=config)
    cache.layers = [layer() for _ in cache.layers]
    return cache


def decoding_cache(model: Any, num_beams: int) -> Any:
    """A fresh key/value cache for one ``generate`` call of an encoder-decoder ``model``: the
    self-attention cache in :class:`GrowingLayer` s and, for beam search, a cross-attention cache that is
    never reordered (see the module docstring)."""
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    class _FixedCrossAttentionCache(EncoderDecoderCache):
        def reorder_cache(self, beam_idx):
            self.self_attention_cache.reorder_cache(beam_idx)

    config = model.config.get_text_config(decoder=True)
    kind = _FixedCrossAttentionCache if num_beams > 1 else EncoderDecoderCache
    return kind(growing_cache(model), DynamicCache(config=config))


def _grouped_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, position_bias=None,
                       **kwargs):
    """transformers attention interface: cross-attention of ``module._t2m_beams`` consecutive rows (the
    beams of one input) against the first row's keys and values; any other module goes to the model's
    own implementation."""
    import torch
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    groups = getattr(module, "_t2m_beams", 1)
    if groups == 1 or query.shape[0] % groups or key.shape[0] != query.shape[0] or module.training:
        own = ALL_ATTENTION_FUNCTIONS.get_interface(module._t2m_own_attention, None)
        return own(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                   position_bias=position_bias, **kwargs)
    rows, heads, q_len, dim = query.shape
    inputs = rows // groups

    def by_input(t):  # (rows, heads, q, x) -> (inputs, heads, beams*q, x)
        return t.reshape(inputs, groups, heads, q_len, -1).permute(0, 2, 1, 3, 4).reshape(inputs, heads, groups * q_len, -1)

    # one contiguous copy of each input's keys and values per generate call (the cross-attention cache
    # hands the same tensors every step): batched matmul would otherwise copy the strided rows each step
    shared = getattr(module, "_t2m_shared_kv", None)
    if shared is None or shared[0] is not key or shared[1] is not value:
        shared = (key, value, key[::groups].contiguous(), value[::groups].contiguous())
        module._t2m_shared_kv = shared
    key_one, value_one = shared[2], shared[3]
    scores = torch.matmul(by_input(query), key_one.transpose(-1, -2))
    if scaling is not None and scaling != 1.0:
        scores = scores * scaling
    bias = position_bias
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:  # sdpa-style mask: True = attend
            attention_mask = torch.zeros(attention_mask.shape, dtype=scores.dtype, device=scores.device).masked_fill(
                ~attention_mask, torch.finfo(scores.dtype).min)
        bias = attention_mask if bias is None else bias + attention_mask
    if bias is not None:
        scores = scores + by_input(bias.expand(rows, heads, q_len, bias.shape[-1]))
    weights = torch.softmax(scores.float(), dim=-1).to(value.dtype)
    out = torch.matmul(weights, value_one)  # (inputs, heads, beams*q, dim)
    out = out.reshape(inputs, heads, groups, q_len, dim).permute(0, 2, 3, 1, 4).reshape(rows, q_len, heads, dim)
    return out, None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, _grouped_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)  # masks as for sdpa (boolean, or None)


def _cross_attention_modules(model: Any) -> list:
    blocks = getattr(getattr(model, "decoder", None), "block", None)
    if not blocks:
        return []
    modules = [getattr(block.layer[1], "EncDecAttention", None) if len(block.layer) > 1 else None for block in blocks]
    return modules if all(m is not None and hasattr(m, "config") for m in modules) else []


@contextlib.contextmanager
def fast_decoding(model: Any, num_beams: int) -> Iterator[dict[str, Any]]:
    """The one way t2m calls ``generate``: inside, ``model.generate(..., **options)`` with the yielded
    ``options`` uses :func:`decoding_cache` and, for beam search, :func:`shared_cross_attention`.
    Decoder-only models get ``{}`` and no change. Raises ``RuntimeError`` (:func:`check_transformers_version`)
    when the installed transformers is not the minor version this is tested with."""
    if not getattr(model.config, "is_encoder_decoder", False):
        yield {}
        return
    check_transformers_version()
    with shared_cross_attention(model, num_beams):
        yield {"cache": decoding_cache(model, num_beams)}


@contextlib.contextmanager
def shared_cross_attention(model: Any, num_beams: int) -> Iterator[bool]:
    """While inside, ``model``'s decoder cross-attention reads one copy of an input's keys and values for
    all ``num_beams`` beams. T5-family models only (anything else, or ``num_beams`` 1: no change; yields
    whether it applies). Restores the model's own attention implementation on exit, also on errors."""
    cross = _cross_attention_modules(model) if num_beams > 1 else []
    configs = {id(m.config): m.config for m in cross}
    own = {key: config._attn_implementation for key, config in configs.items()}
    if not cross or any(impl not in ("sdpa", "eager") for impl in own.values()):
        yield False
        return
    _register()
    decoder_attention = [m for m in model.decoder.modules() if hasattr(m, "config") and id(m.config) in configs
                         and m.__class__.__name__.endswith("Attention")]
    for m in decoder_attention:
        m._t2m_own_attention = own[id(m.config)]
    for m in cross:
        m._t2m_beams = num_beams
    try:
        for config in configs.values():
            config._attn_implementation = ATTENTION_NAME
        yield True
    finally:
        for key, config in configs.items():
            config._attn_implementation = own[key]
        for m in cross:
            del m._t2m_beams
            m.__dict__.pop("_t2m_shared_kv", None)
        for m in decoder_attention:
            del m._t2m_own_attention


def length_rounds(max_new_tokens: int, first: int | None) -> list[int]:
    """The ``max_new_tokens`` of each decoding round: ``first``, doubled until ``max_new_tokens`` is
    reached (``[64, 128, 256]`` for 64 and 256); one round of ``max_new_tokens`` when ``first`` is 0 or
    None or not smaller.

    A batch decodes as long as its longest output and, in beam search, until every input has
    ``num_beams`` finished hypotheses: one runaway input keeps the whole batch running to the limit.
    Decoding everything with a short limit first and again only the inputs that did not finish (their
    own batches, with a longer limit) gives every input the result it would get in one round -- an
    input's decoding does not depend on its batch, and one that finished within a limit never reached
    it -- at a fraction of the cost. On the first 64 ChEBI-20 test rows (shipped model, beam 5, one
    thread, ``tests/benchmarks/bench_fast_decoding.py``) rounds took text2mol from 1.19 to 2.65 inputs/s
    (first round 64) and mol2text from 1.00 to 1.46 (first round 128), with the same candidates."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if not first or first >= max_new_tokens:
        return [max_new_tokens]
    if first < 1:
        raise ValueError(f"first_round_tokens must be at least 1 (or None for one round), got {first}")
    limits = [first]
    while limits[-1] * 2 < max_new_tokens:
        limits.append(limits[-1] * 2)
    return limits + [max_new_tokens]


def generate_in_rounds(model: Any, encode: Callable[[list[int]], dict], rows: Sequence[int], *, num_beams: int,
                       num_return_sequences: int, max_new_tokens: int, first_round_tokens: int | None,
                       batch_size: int, eos_token_id: int | None, **generate_kwargs: Any
                       ) -> Iterator[tuple[int, Any, Any]]:
    """``model.generate`` over ``rows`` in batches of ``batch_size`` and in :func:`length_rounds`, with
    :func:`fast_decoding`; yields ``(row, sequences, scores)`` for each row once it is final --
    ``sequences`` its ``num_return_sequences`` (n, length) token ids, ``scores`` their
    ``sequences_scores`` or None. ``encode(rows)`` gives the batch's ``input_ids`` / ``attention_mask``
    (and any keyword of that batch's own, e.g. its ``logits_processor``).

    A row is final when all its returned sequences hold ``eos_token_id`` (with beam search ask for all
    beams, ``num_return_sequences = num_beams``, so that "ended" means what beam search means by done)
    or in the last round. Rows come out in the order they finish, within a round in ``rows`` order (sort
    ``rows`` by length for tight batches). Run it inside ``torch.inference_mode()`` and any logits-processor
    context the caller needs: each batch's ``generate`` runs as the iteration reaches it."""
    if eos_token_id is None:
        first_round_tokens = 0  # nothing can be seen to end
    pending = list(rows)
    for limit in length_rounds(max_new_tokens, first_round_tokens):
        unfinished = []
        for start in range(0, len(pending), batch_size):
            chunk = pending[start : start + batch_size]
            with fast_decoding(model, num_beams) as fast_options:
                out = model.generate(**encode(chunk), num_beams=num_beams, num_return_sequences=num_return_sequences,
                                     max_new_tokens=limit, return_dict_in_generate=True, **generate_kwargs,
                                     **fast_options)
            sequences, scores = out.sequences, getattr(out, "sequences_scores", None)
            final = limit >= max_new_tokens
            if not final:
                ended = (sequences[:, 1:] == eos_token_id).any(dim=1).view(len(chunk), -1).all(dim=1).tolist()
            for i, row in enumerate(chunk):
                if not final and not ended[i]:
                    unfinished.append(row)
                    continue
                part = slice(i * num_return_sequences, (i + 1) * num_return_sequences)
                yield row, sequences[part], None if scores is None else scores[part]
        pending = unfinished
