"""The signature printed beside every score: the mode and every version that can change a number."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version

MODES = ("molt5", "strict")
# distribution name -> signature key
_PACKAGES = {
    "rdkit": "rdkit",
    "nltk": "nltk",
    "fcd": "fcd",
    "torch": "torch",
    "rouge-score": "rouge-score",
    "levenshtein": "Levenshtein",
    "t2m": "t2m",
}


@cache
def package_version(dist: str) -> str | None:
    """Installed version of a distribution, None if it is not installed."""
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def build_signature(
    task: str,
    mode: str,
    *,
    text_tokenizer: str | None = None,
    vocab_sha256: str | None = None,
    wordnet: str | None = None,
    fcd: bool = False,
    sacrebleu_signature: str | None = None,
) -> dict[str, str | None]:
    """Signature dict. Library versions are those whose computations the numbers reproduce (BLEU = nltk's
    corpus_bleu, METEOR = nltk's meteor_score, ROUGE = rouge-score's scorer: the tests check identity)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    sig: dict[str, str | None] = {"task": task, "mode": mode}
    for dist, key in _PACKAGES.items():
        sig[key] = package_version(dist)
    if not fcd:
        sig["fcd"] = sig["torch"] = None
    sig["text_tokenizer"] = text_tokenizer
    sig["vocab_sha256"] = vocab_sha256
    sig["wordnet"] = wordnet
    sig["sacrebleu"] = sacrebleu_signature  # sacrebleu's own signature string, with its version
    return sig
