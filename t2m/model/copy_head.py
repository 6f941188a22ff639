"""A T5 that can copy tokens from its input: a pointer-generator head (See et al., 2017) on
``T5ForConditionalGeneration``.

At every decoding step a copy attention over the encoder states (its own query and key projections of
the decoder and encoder states) gives a distribution over the input's tokens; a gate computed from the
decoder state and the attended encoder state mixes it with the vocabulary distribution::

    p(y) = (1 - g) · softmax(lm_logits)(y) + g · Σ_{i: x_i = y} a_i

The mixture is returned as ``logits`` holding log-probabilities (mixed in log space with ``logaddexp``),
so ``generate``'s log-softmax leaves them unchanged and beam search, sampling, logits processors (SMILES
constraints) and kNN-MT (which hooks the decoder's final hidden state) work as with any T5. Trained with
neighbours in the input (:mod:`t2m.neighbours.database`), it learns when to copy the neighbour's target and when
to write tokens of its own.

``copy_gate_shift`` in ``config.json`` (default 0) shifts the gate's logit at decoding time only: chosen
on the dev slice, it trades copying against writing without retraining.

The head is switched on by ``copy_head: true`` in the checkpoint's ``config.json``; :func:`t2m.model.checkpoint.load_model`
then loads this class. Plain ``T5ForConditionalGeneration`` still loads such a checkpoint (without the
head: it then decodes with the vocabulary distribution alone).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import T5ForConditionalGeneration
from transformers.modeling_outputs import Seq2SeqLMOutput

COPY_DIM = 64
LOG_EPS = 1e-9
# The gate starts open (sigmoid(1) = 0.73): with a warm-started generator and a random copy attention, a
# closed start lets the mixture loss shut the gate for good before the attention learns anything (measured:
# mean gate 0.000 on dev after 300 steps).
COPY_GATE_BIAS = 1.0
# Weight of the copy-attention loss: -log of the attention mass on input positions holding the gold token,
# where there is one. It teaches the attention where to point whatever the gate does.
COPY_LOSS_WEIGHT = 1.0
# Initial bonus of the copy score at input positions whose preceding token is the token the decoder just
# read: "continue where the neighbour continues", which a copy attention learns only slowly on its own.
COPY_MATCH_BONUS = 3.0


class CopyHead(nn.Module):
    """Copy attention and gate: decoder states (batch, tgt, d) and encoder states (batch, src, d) ->
    copy weights (batch, tgt, src) and gate logits (batch, tgt)."""

    def __init__(self, d_model: int, copy_dim: int = COPY_DIM, gate_bias: float = COPY_GATE_BIAS):
        super().__init__()
        self.match_bonus = nn.Parameter(torch.tensor(COPY_MATCH_BONUS))
        self.query = nn.Linear(d_model, copy_dim, bias=False)
        self.key = nn.Linear(d_model, copy_dim, bias=False)
        self.gate = nn.Linear(2 * d_model, 1)
        self.scale = copy_dim ** -0.5
        self.gate_bias = gate_bias

    def forward(self, decoder_states, encoder_states, encoder_keys, attention_mask, follows=None):
        """``follows`` (batch, tgt, src), optional: 1 where the input token before position i is the token the
        decoder read at that step; it adds ``match_bonus`` to the copy score."""
        query = self.query(decoder_states)  # (batch, tgt, c)
        scores = torch.matmul(query, encoder_keys.transpose(1, 2)) * self.scale  # (batch, tgt, src)
        if follows is not None:
            scores = scores + self.match_bonus.to(scores.dtype) * follows.to(scores.dtype)
        if attention_mask is not None:
            scores = scores.masked_fill(attention_mask[:, None, :] == 0, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores.float(), dim=-1)  # (batch, tgt, src)
        context = torch.matmul(weights.to(encoder_states.dtype), encoder_states)  # (batch, tgt, d)
        gate = self.gate(torch.cat([decoder_states, context], dim=-1)).squeeze(-1).float()  # (batch, tgt)
        return weights, gate


class T5CopyForConditionalGeneration(T5ForConditionalGeneration):
    """``T5ForConditionalGeneration`` with a copy head; ``logits`` are mixed log-probabilities."""

    def __init__(self, config):
        config.copy_head = True
        if not getattr(config, "copy_dim", None):
            config.copy_dim = COPY_DIM
        if getattr(config, "copy_loss_weight", None) is None:
            config.copy_loss_weight = COPY_LOSS_WEIGHT
        super().__init__(config)
        self.copy_head = CopyHead(config.d_model, config.copy_dim)
        self._key_cache: tuple | None = None
        self.post_init()

    def _init_weights(self, module):
        # the copy head's layers are initialised here, not by T5's rule for any Linear (std 1.0, which makes
        # the copy attention one-hot from the start); transformers initialises each tensor once
        head = getattr(self, "copy_head", None)
        if head is not None and module in (head.query, head.key, head.gate):
            from transformers import initialization as init

            d = self.config.d_model
            init.normal_(module.weight, mean=0.0, std=(d if module is not head.gate else 2 * d) ** -0.5)
            if module.bias is not None:
                init.constant_(module.bias, head.gate_bias)
            return
        super()._init_weights(module)

    def generate(self, inputs=None, **kwargs):
        """``generate`` that hands the input ids on to every decoding step as ``copy_source_ids`` (generate
        runs the encoder once and forgets them; the copy distribution needs them; generate expands them
        for beams like any other model input)."""
        source = inputs if inputs is not None else kwargs.get("input_ids")
        if kwargs.get("copy_source_ids") is None and source is not None:
            kwargs["copy_source_ids"] = source
        return super().generate(inputs, **kwargs)

    def _encoder_keys(self, encoder_states):
        """Key projections of the encoder states, computed once per generate call (the encoder output is
        the same tensor at every step)."""
        cached = self._key_cache
        if self.training or cached is None or cached[0] is not encoder_states:
            cached = (encoder_states, self.copy_head.key(encoder_states))
            if not self.training:
                self._key_cache = cached
        return cached[1]

    def _training_loss(self, lm_logits, weights, gate_logits, source_ids, labels):
        """The training loss from the gold tokens alone: -log p(gold) of the mixture (as ``mix_copy`` then
        ``nll_loss`` give it, without the (batch, tgt, vocab) mixture), plus the copy-attention loss."""
        valid = labels != -100  # (batch, tgt)
        gold = labels.clamp(min=0)
        generated = -nn.functional.cross_entropy(lm_logits.float().flatten(0, 1), gold.flatten(),
                                                 reduction="none").view(gold.shape)
        mass, copyable = gold_copy_mass(weights, source_ids, labels)  # copy probability of the gold token
        log_p = torch.logaddexp(generated + nn.functional.logsigmoid(-gate_logits),
                                torch.log(mass.float() + LOG_EPS) + nn.functional.logsigmoid(gate_logits))
        loss = -log_p[valid].mean()
        if self.config.copy_loss_weight:
            loss = loss + self.config.copy_loss_weight * _copy_attention_loss(weights, mass, copyable)
        return loss

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, labels=None,
                copy_source_ids=None, output_hidden_states=None, **kwargs):
        if labels is not None and decoder_input_ids is None and kwargs.get("decoder_inputs_embeds") is None:
            decoder_input_ids = self._shift_right(labels)
        source_ids = copy_source_ids if copy_source_ids is not None else input_ids
        if source_ids is None:
            raise ValueError("T5CopyForConditionalGeneration needs the input ids (input_ids or copy_source_ids) "
                             "to copy from")
        kwargs.pop("return_dict", None)
        out = super().forward(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                              labels=None, output_hidden_states=True, return_dict=True, **kwargs)
        decoder_states = out.decoder_hidden_states[-1]  # (batch, tgt, d), after the final layer norm
        encoder_states = out.encoder_last_hidden_state  # (batch, src, d)
        keys = self._encoder_keys(encoder_states)
        source_ids = source_ids[:, : encoder_states.shape[1]]
        weights, gate = self.copy_head(decoder_states, encoder_states, keys, attention_mask,
                                       follows_token(source_ids, decoder_input_ids))
        source_ids = source_ids[:, : weights.shape[-1]]
        if self.training and labels is not None:
            # training: the loss needs the mixture at the gold tokens only, not over the vocabulary
            loss, log_probs = self._training_loss(out.logits, weights, gate, source_ids, labels), None
        else:
            if not self.training and getattr(self.config, "copy_gate_shift", 0.0):
                # decoding only: a shift of the gate's logit chosen on dev (> 0 copies more, < 0 writes more)
                gate = gate + float(self.config.copy_gate_shift)
            log_probs = mix_copy(out.logits, weights, gate, source_ids)
            loss = None
            if labels is not None:
                loss = nn.functional.nll_loss(log_probs.reshape(-1, log_probs.shape[-1]), labels.reshape(-1),
                                              ignore_index=-100)
        return Seq2SeqLMOutput(
            loss=loss, logits=log_probs, past_key_values=out.past_key_values,
            decoder_hidden_states=out.decoder_hidden_states if output_hidden_states else None,
            decoder_attentions=out.decoder_attentions, cross_attentions=out.cross_attentions,
            encoder_last_hidden_state=encoder_states,
            encoder_hidden_states=out.encoder_hidden_states if output_hidden_states else None,
            encoder_attentions=out.encoder_attentions,
        )


def mix_copy(lm_logits, weights, gate_logits, source_ids):
    """log((1 - g) · softmax(lm_logits) + g · copy), with copy[y] = Σ_{i: source_i = y} weights_i.

    lm_logits (batch, tgt, vocab); weights (batch, tgt, src); gate_logits (batch, tgt); source_ids
    (batch, src). Returns float32 log-probabilities (batch, tgt, vocab)."""
    vocab = lm_logits.shape[-1]
    index = source_ids.clamp(0, vocab - 1)[:, None, :].expand(-1, weights.shape[1], -1)  # (batch, tgt, src)
    copy = torch.zeros(weights.shape[0], weights.shape[1], vocab, dtype=torch.float32, device=weights.device)
    copy.scatter_add_(2, index, weights.float())  # (batch, tgt, vocab)
    generate = torch.log_softmax(lm_logits.float(), dim=-1) + nn.functional.logsigmoid(-gate_logits)[..., None]
    copied = torch.log(copy + LOG_EPS) + nn.functional.logsigmoid(gate_logits)[..., None]
    return torch.logaddexp(generate, copied)


def follows_token(source_ids, decoder_input_ids):
    """(batch, tgt, src) booleans: input position i comes right after a token equal to the decoder's input
    at step t (the last token written). None when the decoder inputs are not ids (embeddings given)."""
    if decoder_input_ids is None or source_ids is None:
        return None
    previous = torch.full_like(source_ids, -1)  # (batch, src): the token before each input position
    previous[:, 1:] = source_ids[:, :-1]
    return previous[:, None, :] == decoder_input_ids[:, :, None]


def gold_copy_mass(weights, source_ids, labels):
    """The copy attention's mass on the input positions holding the gold token, (batch, tgt) (0 where none
    does), and where the gold token occurs in the input at all, (batch, tgt) booleans (never at -100).
    weights (batch, tgt, src); source_ids (batch, src); labels (batch, tgt)."""
    hits = source_ids[:, None, :] == labels[:, :, None]  # (batch, tgt, src)
    copyable = hits.any(-1) & (labels != -100)  # (batch, tgt)
    return (weights * hits).sum(-1), copyable


def copy_attention_loss(weights, source_ids, labels):
    """Mean of -log(attention mass on the input positions that hold the gold token) over the target positions
    whose gold token occurs in the input. weights (batch, tgt, src); source_ids (batch, src); labels (batch, tgt)."""
    return _copy_attention_loss(weights, *gold_copy_mass(weights, source_ids, labels))


def _copy_attention_loss(weights, mass, copyable):
    if not bool(copyable.any()):
        return weights.sum() * 0.0
    return -torch.log(mass[copyable] + LOG_EPS).mean()


def with_copy_head(model) -> T5CopyForConditionalGeneration:
    """A copy-head model holding ``model``'s T5 weights (the head freshly initialised): how a plain T5
    checkpoint is warm-started into one that copies."""
    config = model.config
    config.copy_head = True
    config.copy_dim = getattr(config, "copy_dim", None) or COPY_DIM
    copy_model = T5CopyForConditionalGeneration(config)
    missing, unexpected = copy_model.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not k.startswith("copy_head.") for k in missing):
        raise ValueError(f"weights do not fit a copy-head T5: missing {missing}, unexpected {unexpected}")
    copy_model.generation_config = model.generation_config
    return copy_model
