"""The WordPiece tokenizer MolT5's caption metrics count tokens with (SciBERT, uncased), found offline.

MolT5 tokenizes with ``BertTokenizerFast.from_pretrained('allenai/scibert_scivocab_uncased')`` and
``tokenize(text, truncation=True, max_length=512, padding='max_length')``, then drops every ``[PAD]``,
``[CLS]`` and ``[SEP]`` token. With the transformers 4 it was written for, that keeps the first 512
WordPiece tokens (no special tokens are added by ``tokenize``). transformers 5 ignores those keyword
arguments in ``tokenize`` and no longer truncates; :class:`TextTokenizer` truncates at 512 explicitly,
as MolT5's numbers were made.

For a directory holding ``vocab.txt`` (and no ``tokenizer.json``) the pipeline is built directly with the
``tokenizers`` library -- the same normalizer, pre-tokenizer, WordPiece model and special tokens that
``BertTokenizerFast.from_pretrained(DIR)`` builds (the tests check token-for-token identity), without
importing transformers (about 2 s). Anything else is loaded with ``transformers.AutoTokenizer``
(``local_files_only``: nothing is downloaded).

Default location: ``$T2M_SCIBERT``, else ``$T2M_SHARED_DATA/scibert_scivocab_uncased`` (``T2M_SHARED_DATA``
defaults to ``../shared/data`` from the working directory: beside the repository when run from its root).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

SCIBERT_ID = "allenai/scibert_scivocab_uncased"
MAX_TOKENS = 512
DROPPED_TOKENS = ("[PAD]", "[CLS]", "[SEP]")
_BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class TokenizerNotFoundError(RuntimeError):
    """The text tokenizer (SciBERT vocabulary) is not available offline."""


def shared_data_dir() -> Path:
    """``$T2M_SHARED_DATA``, default ``../shared/data`` from the working directory (never a path computed from
    where the package is installed)."""
    if os.environ.get("T2M_SHARED_DATA"):
        return Path(os.environ["T2M_SHARED_DATA"]).expanduser()
    return Path.cwd().parent / "shared" / "data"


def default_scibert_dir() -> Path:
    if os.environ.get("T2M_SCIBERT"):
        return Path(os.environ["T2M_SCIBERT"]).expanduser()
    return shared_data_dir() / "scibert_scivocab_uncased"


def _not_found(what: str) -> TokenizerNotFoundError:
    return TokenizerNotFoundError(
        f"text tokenizer not found: {what}.\n"
        "MolT5's caption BLEU/METEOR count SciBERT WordPiece tokens, and t2m never falls back to another tokenizer.\n"
        "Fix: pass --text-tokenizer DIR (a folder holding SciBERT's vocab.txt), or set T2M_SCIBERT=DIR, or put it at "
        f"{shared_data_dir() / 'scibert_scivocab_uncased'}. To get it on a machine with internet: "
        f"`huggingface-cli download {SCIBERT_ID} vocab.txt --local-dir scibert_scivocab_uncased` "
        f"(or save AutoTokenizer.from_pretrained('{SCIBERT_ID}') with save_pretrained) and copy the folder here."
    )


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class TextTokenizer:
    """Tokenizes captions into the token lists MolT5's BLEU and METEOR see.

    ``name`` names the tokenizer in the signature, ``vocab_sha256`` is the sha256 of its ``vocab.txt``
    (or of its JSON-serialised vocabulary when it has no vocab.txt).
    """

    def __init__(self, backend, name: str, vocab_sha256: str, vocabulary: list[str], via_transformers: bool):
        self._backend = backend
        self.name = name
        self.vocab_sha256 = vocab_sha256
        self.vocabulary = vocabulary
        self.via_transformers = via_transformers

    @classmethod
    def load(cls, name_or_dir: str | os.PathLike | None = None) -> TextTokenizer:
        """Load from a directory or a Hugging Face id available offline; raises TokenizerNotFoundError."""
        if name_or_dir is None or str(name_or_dir) == SCIBERT_ID:
            d = default_scibert_dir()
            if (d / "vocab.txt").is_file():
                return cls._from_vocab_dir(d)
            if name_or_dir is None:
                raise _not_found(f"no vocab.txt in {d}")
        d = Path(name_or_dir).expanduser()
        if d.is_dir():
            if (d / "vocab.txt").is_file() and not (d / "tokenizer.json").is_file():
                return cls._from_vocab_dir(d)
            if not any((d / f).is_file() for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
                raise _not_found(f"{d} holds no vocab.txt / tokenizer.json")
        elif str(name_or_dir).startswith((".", "/", "~")) or str(name_or_dir).count("/") != 1:
            raise _not_found(f"{d} is not a directory")  # a path, not a hub id like org/name
        return cls._from_transformers(str(name_or_dir))

    @classmethod
    def _from_vocab_dir(cls, d: Path) -> TextTokenizer:
        from tokenizers import AddedToken, Tokenizer, normalizers, pre_tokenizers
        from tokenizers.models import WordPiece

        config: dict = {}
        if (d / "tokenizer_config.json").is_file():
            config = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
        vocab_path = d / "vocab.txt"
        vocabulary: list[str] = []
        vocab: dict[str, int] = {}
        with open(vocab_path, encoding="utf-8") as f:  # as transformers' load_vocab: one token per line
            for line in f:
                token = line.rstrip("\n")
                vocab[token] = len(vocabulary)  # a repeated token keeps its last index, as in transformers
                vocabulary.append(token)
        unk = config.get("unk_token", "[UNK]")
        if unk not in vocab:
            raise _not_found(f"{vocab_path} has no {unk} token; is it a BERT WordPiece vocabulary?")
        backend = Tokenizer(WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100))
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True,
            handle_chinese_chars=config.get("tokenize_chinese_chars", True),
            strip_accents=config.get("strip_accents"),
            lowercase=config.get("do_lower_case", True),
        )
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        specials = [
            config.get(k, v)
            for k, v in zip(("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"), _BERT_SPECIAL_TOKENS)
        ]
        backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials if t in vocab])
        return cls(backend, d.name, _sha256_file(vocab_path), vocabulary, via_transformers=False)

    @classmethod
    def _from_transformers(cls, name_or_dir: str) -> TextTokenizer:
        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(name_or_dir, local_files_only=True)
        except (OSError, ValueError) as e:
            raise _not_found(f"{name_or_dir!r} could not be loaded offline ({str(e).splitlines()[0]})") from e
        vocab = tok.get_vocab()
        vocabulary = sorted(vocab, key=vocab.get)
        d = Path(name_or_dir)
        vocab_file = d / "vocab.txt"
        if vocab_file.is_file():
            digest = _sha256_file(vocab_file)
        else:
            digest = hashlib.sha256(json.dumps(vocabulary, ensure_ascii=False).encode("utf-8")).hexdigest()
        return cls(tok, Path(name_or_dir).name, digest, vocabulary, via_transformers=True)

    def tokenize(self, text: str) -> list[str]:
        """MolT5's tokens of ``text``: the first 512 WordPiece tokens without [PAD]/[CLS]/[SEP]."""
        return self.tokenize_batch([text])[0]

    def tokenize_batch(self, texts: Sequence[str]) -> list[list[str]]:
        if self.via_transformers:
            raw = [self._backend.tokenize(t) for t in texts]
        else:
            raw = [e.tokens for e in self._backend.encode_batch(list(texts), add_special_tokens=False)]
        return [[t for t in toks[:MAX_TOKENS] if t not in DROPPED_TOKENS] for toks in raw]
