"""One vocabulary for text and SMILES.

A SentencePiece unigram model is trained on captions and SMILES with *identity* normalisation, no
whitespace collapsing and byte fallback, so that ``decode(encode(x)) == x`` for every string (a
backslash, ``@@``, ``%12``, ``℃`` or any other character included). It is wrapped as a Hugging Face
fast tokenizer (``tokenizer.json``) with T5's special tokens (pad 0, eos 1, unk 2), so the checkpoint
directory loads with ``AutoTokenizer.from_pretrained`` anywhere.

The SentencePiece converter in transformers 5 does not reproduce such a model faithfully (it maps
every piece to ``<unk>`` and collapses whitespace), so the ``tokenizers`` pipeline is built here
directly from the model's pieces and scores.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable

SPECIAL_TOKENS = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}


def train_sentencepiece(texts: Iterable[str], vocab_size: int = 4000, num_threads: int = 2) -> bytes:
    """Train a unigram SentencePiece model on ``texts``; returns the serialized model proto."""
    import sentencepiece as spm

    texts = [t for t in texts if t]
    if not texts:
        raise ValueError("train_sentencepiece: no non-empty training texts")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        normalization_rule_name="identity",  # keep every character as written (NFKC would rewrite some)
        remove_extra_whitespaces=False,
        byte_fallback=True,  # anything unseen still round-trips, as UTF-8 bytes
        split_digits=True,  # ring-closure digits and locants are single tokens
        character_coverage=1.0,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        max_sentence_length=16384,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        hard_vocab_limit=False,
        num_threads=num_threads,
        minloglevel=2,
    )
    return model.getvalue()


def fast_tokenizer_from_sentencepiece(model_proto: bytes, model_max_length: int = 512):
    """A ``PreTrainedTokenizerFast`` that tokenizes exactly like the SentencePiece model."""
    import sentencepiece as spm
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    sp = spm.SentencePieceProcessor(model_proto=model_proto)
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    if [vocab[0][0], vocab[1][0], vocab[2][0]] != ["<pad>", "</s>", "<unk>"]:
        raise ValueError("SentencePiece model must have <pad>=0, </s>=1, <unk>=2 (train it with train_sentencepiece)")
    backend = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=True))
    # SentencePiece's dummy prefix and space marker, as a normalizer so that leading spaces survive
    # (Metaspace's own prepending skips a text that already starts with a space).
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    backend.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
        **SPECIAL_TOKENS,
    )
    return tokenizer


def train_tokenizer(texts: Iterable[str], out_dir: str | Path, vocab_size: int = 4000):
    """Train the shared text+SMILES tokenizer and save it (``tokenizer.json`` + ``spiece.model``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    proto = train_sentencepiece(texts, vocab_size=vocab_size)
    tokenizer = fast_tokenizer_from_sentencepiece(proto)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "spiece.model").write_bytes(proto)
    return tokenizer


def load_tokenizer(path: str | Path):
    """Load the tokenizer of a checkpoint directory (ours, or any Hugging Face T5 tokenizer)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def round_trip_failures(tokenizer, texts: Iterable[str], batch_size: int = 2048) -> list[str]:
    """The texts that do not survive ``decode(encode(x))`` unchanged."""
    texts = list(texts)
    failures = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        ids = tokenizer(chunk, add_special_tokens=False)["input_ids"]
        decoded = tokenizer.batch_decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        failures.extend(x for x, y in zip(chunk, decoded) if x != y)
    return failures
