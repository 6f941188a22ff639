"""A T5 on CPU without the slow parts of dropout and attention: what ``t2m train`` installs for training, and
``t2m datastore build`` for its teacher-forced pass.

Profiled on this project's CPU (a T5 of preset cpu-small with the copy head, 16 x (320 + 160) tokens, bf16
autocast), a training step spent 19% of its time in ``bernoulli_``, the random numbers of dropout: PyTorch
draws a fresh random float per element (about 18 ns each here), and T5 drops out its attention
probabilities, one per head, query and key. Attention in the stock path (``sdpa``, which with T5's
position bias and dropout runs PyTorch's composite "math" kernel) also builds a full (batch, heads, query,
key) float mask per layer and checks every row for an all-masked softmax.

Installed on a model (:func:`install`), training computes the same function with cheaper parts:

- dropout keeps each element with the same probability, drawn from 16 random bits per element (four per
  64-bit draw) instead of a random float: ``p`` is rounded to a multiple of 2**-16 (0.1 -> 0.100006);
- attention adds T5's position bias and masks by broadcasting instead of materialising a mask, takes the
  softmax in the scores' precision (as sdpa does), applies that dropout to the probabilities and its
  1 / (1 - p) to the (much smaller) output;
- the gated feed-forward layer takes ``gelu_new`` as one kernel, applies dropout's scale to its output
  and skips a float32 round trip of its activations under autocast.

In evaluation (``model.eval()``) both are the stock modules and kernels, so dev metrics, generation and
saved checkpoints are unchanged; the weights and the config saved are those of the stock model.
``install(model, evaluation=True)`` uses the same attention in evaluation too (no dropout): the stock
``sdpa`` path materialises a (batch, heads, query, key) float mask of T5's position bias in every layer,
which took 26% of a datastore build's time (py-spy, ChEBI-20 text2mol pairs read with their neighbours,
bf16 autocast) and gelu_new's six elementwise passes another 13%.
"""

from __future__ import annotations

import functools
import math

ATTENTION_NAME = "t2m_training"
EVALUATION_ATTENTION_NAME = "t2m_fast"


def drop_mask(shape, p: float, device=None):
    """Booleans of ``shape``, True with probability ``p`` (to 2**-16): 16 random bits per element."""
    import torch

    n = math.prod(shape)
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-2**63, 2**63 - 1)
    threshold = round(p * 65536) - 32768  # int16 values below it: probability round(p * 65536) / 65536
    return (bits.view(torch.int16)[:n] < threshold).view(shape)


def dropout(x, p: float, training: bool = True):
    """``torch.nn.functional.dropout`` with :func:`drop_mask`'s random numbers."""
    import torch

    if not training or p == 0.0:
        return x
    if p >= 1.0:
        return x * 0.0
    return torch.where(drop_mask(x.shape, p, x.device), 0.0, x) * (1.0 / (1.0 - p))


@functools.lru_cache(maxsize=None)
def _dropout_class():
    from torch import nn

    class FastDropout(nn.Dropout):
        """``nn.Dropout`` drawing its mask with :func:`drop_mask` (the same module otherwise)."""

        def forward(self, x):
            return dropout(x, self.p, self.training)

    return FastDropout


def training_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, position_bias=None,
                       **kwargs):
    """transformers attention interface (masks as for ``sdpa``: boolean, True = attend, or None): in
    training :func:`fast_attention`, in evaluation transformers' ``sdpa``."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not module.training:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      position_bias=position_bias, **kwargs)
    return fast_attention(module, query, key, value, attention_mask, scaling, dropout, position_bias)


def fast_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, position_bias=None,
                   **kwargs):
    """transformers attention interface: scores + position bias (broadcast, not materialised with the mask),
    masked in place, softmax in the scores' precision, :func:`dropout` in training, times the values."""
    import torch

    if not module.training:
        dropout = 0.0
    scores = torch.matmul(query, key.transpose(2, 3))  # (batch, heads, q, k)
    if scaling is not None and scaling != 1.0:
        scores = scores * scaling
    if position_bias is not None:
        # in the scores' precision, as sdpa gets its float mask under autocast
        scores = scores + position_bias.to(scores.dtype)
    q_len, k_len = scores.shape[-2:]
    # in place: no autograd node keeps the scores before the softmax
    if attention_mask is not None:
        scores.masked_fill_(~attention_mask, torch.finfo(scores.dtype).min)
    elif getattr(module, "is_causal", False) and q_len > 1:
        future = torch.ones(q_len, k_len, dtype=torch.bool, device=scores.device).triu(k_len - q_len + 1)
        scores.masked_fill_(future, torch.finfo(scores.dtype).min)
    with torch.autocast(scores.device.type, enabled=False):
        # in the scores' precision, as sdpa's softmax (autocast would make it float32: two more passes)
        probs = torch.softmax(scores, dim=-1)
    if dropout:
        # dropout's 1 / (1 - p) is applied to the (batch, heads, q, d) output, not the probabilities
        probs = torch.where(drop_mask(probs.shape, dropout, probs.device), 0.0, probs)  # one pass, not two
    out = torch.matmul(probs.to(value.dtype), value)  # (batch, heads, q, d)
    if dropout:
        out = out * (1.0 / (1.0 - dropout))
    return out.transpose(1, 2).contiguous(), None


def _gated_ff_forward(self, hidden_states):
    """``T5DenseGatedActDense.forward`` with ``gelu_new`` as one kernel (PyTorch's tanh-approximated gelu:
    the same formula, not six elementwise passes each keeping its input for the backward), dropout's
    1 / (1 - p) applied to the (d_model-wide) output instead of the d_ff-wide activations, and without
    the cast of the activations to ``wo``'s float32 under autocast, which ``wo``'s autocast casts straight
    back (an exact round trip, two passes)."""
    import torch

    gate = self.wi_0(hidden_states)
    if type(self.act).__name__ == "NewGELUActivation":
        gate = torch.nn.functional.gelu(gate, approximate="tanh")
    else:
        gate = self.act(gate)
    hidden_states = gate * self.wi_1(hidden_states)
    p = self.dropout.p if self.dropout.training else 0.0
    if p >= 1.0:
        return self.wo(hidden_states.to(self.wo.weight.dtype) * 0.0)
    if p:
        hidden_states = torch.where(drop_mask(hidden_states.shape, p, hidden_states.device), 0.0, hidden_states)
    device = hidden_states.device.type
    weight = self.wo.weight
    autocast = torch.is_autocast_enabled(device) and hidden_states.dtype == torch.get_autocast_dtype(device)
    if not autocast and isinstance(weight, torch.Tensor) and hidden_states.dtype != weight.dtype \
            and weight.dtype != torch.int8:
        hidden_states = hidden_states.to(weight.dtype)
    out = self.wo(hidden_states)
    return out * (1.0 / (1.0 - p)) if p else out


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, training_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    AttentionInterface.register(EVALUATION_ATTENTION_NAME, fast_attention)
    AttentionMaskInterface.register(EVALUATION_ATTENTION_NAME, sdpa_mask)


def install(model, evaluation: bool = False) -> bool:
    """Switch a T5-family ``model`` (in place) to the fast dropout and gated feed-forward and, where it uses
    ``sdpa`` or ``eager`` attention, to :func:`training_attention` -- or with ``evaluation``, to
    :func:`fast_attention` in evaluation too. Returns whether the attention was switched."""
    from torch import nn

    import types

    fast = _dropout_class()
    for module in model.modules():
        if type(module).__name__ == "T5DenseGatedActDense":
            module.forward = types.MethodType(_gated_ff_forward, module)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                replacement = fast(child.p, child.inplace)
                replacement.train(child.training)
                setattr(parent, name, replacement)
    configs = {id(m.config): m.config for m in model.modules() if hasattr(m, "config")}
    if any(getattr(c, "_attn_implementation", None) not in ("sdpa", "eager") for c in configs.values()):
        return False
    _register()
    for config in configs.values():
        config._attn_implementation = EVALUATION_ATTENTION_NAME if evaluation else ATTENTION_NAME
    return True
