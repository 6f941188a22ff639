"""METEOR exactly as ``nltk.translate.meteor_score.meteor_score`` (nltk 3.10.4), fast.

nltk aligns hypothesis and reference words in three stages -- exact match, Porter-stem match, WordNet
synonym match (of the *stems* left over from stage two) -- then scores
``(1 - 0.5 * (chunks/matches)**3) * P*R / (0.9*P + 0.1*R)``. Almost all of nltk's time goes to stemming and
WordNet look-ups, which depend only on the word, so :class:`MeteorScorer` takes them from a table: for
every token of the tokenizer's vocabulary its stem, and for every such stem its WordNet synonym set. The
table is built once with nltk's own PorterStemmer and WordNet reader and cached on disk (see
:mod:`evaluation.cache`); a word missing from the table is stemmed and looked up with nltk on the spot.
The alignment and arithmetic below repeat nltk's line by line; the tests check bit-identity with nltk.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence

from evaluation.cache import atomic_write_bytes, cache_path
from evaluation.wordnet import WordNetLocation, load_wordnet_reader, require_wordnet

ALPHA, BETA, GAMMA = 0.9, 3.0, 0.5


def _synonyms_of(word: str, wordnet) -> frozenset[str]:
    # nltk's _enum_wordnetsyn_match: lemma names without "_" of every synset of the word, plus the word
    names = {
        lemma.name() for synset in wordnet.synsets(word) for lemma in synset.lemmas() if lemma.name().find("_") < 0
    }
    names.add(word)
    return frozenset(names)


class _NltkLookups:
    """Stemmer and WordNet reader, loaded on first use (imports nltk)."""

    def __init__(self, location: WordNetLocation):
        self.location = location
        self._stemmer = None
        self._wordnet = None

    def stem(self, word: str) -> str:
        if self._stemmer is None:
            from nltk.stem.porter import PorterStemmer

            self._stemmer = PorterStemmer()
        return self._stemmer.stem(word)

    def synonyms(self, word: str) -> frozenset[str]:
        if self._wordnet is None:
            self._wordnet = load_wordnet_reader(self.location)
        return _synonyms_of(word, self._wordnet)


def build_meteor_table(words: Iterable[str], location: WordNetLocation, progress: bool = False) -> dict:
    """{"stems": {word: stem}, "synonyms": {stem: [synonyms]}} for the lower-cased ``words``."""
    lookups = _NltkLookups(location)
    words = sorted({w.lower() for w in words})
    stems: dict[str, str] = {}
    synonyms: dict[str, list[str]] = {}
    it: Iterable[str] = words
    if progress:
        from tqdm import tqdm

        it = tqdm(words, desc="METEOR table (stems + WordNet synonyms)", unit="word", file=sys.stderr)
    for w in it:
        s = lookups.stem(w)
        stems[w] = s
        if s not in synonyms:
            synonyms[s] = sorted(lookups.synonyms(s))
    return {"stems": stems, "synonyms": synonyms}


def _nltk_version() -> str:
    from importlib.metadata import version

    return version("nltk")


class MeteorScorer:
    """nltk-exact sentence METEOR over pre-tokenized strings, with memoized stems and synonyms.

    Build with :meth:`for_vocabulary` (table for a tokenizer's vocabulary, cached on disk) or directly
    from a WordNet location (everything looked up with nltk as needed).
    """

    def __init__(self, location: WordNetLocation | None = None, table: dict | None = None):
        self.location = location or require_wordnet()
        self._lookups = _NltkLookups(self.location)
        self._stems: dict[str, str] = dict(table["stems"]) if table else {}
        self._synonyms: dict[str, frozenset[str]] = (
            {k: frozenset(v) for k, v in table["synonyms"].items()} if table else {}
        )

    @classmethod
    def for_vocabulary(
        cls, vocabulary: Iterable[str], vocab_hash: str, location: WordNetLocation | None = None, use_cache: bool = True
    ) -> MeteorScorer:
        """Scorer whose table covers ``vocabulary``; loaded from / saved to the cache unless ``use_cache`` is False."""
        location = location or require_wordnet()
        path = cache_path("meteor", [vocab_hash, _nltk_version(), location.fingerprint()], "json")
        if use_cache and path.is_file():
            try:
                return cls(location, json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError):
                pass  # unreadable cache: rebuild below
        print(
            f"t2m eval: building the METEOR stem/synonym table for {vocab_hash[:12]} (once; cached in {path.parent})",
            file=sys.stderr,
        )
        table = build_meteor_table(vocabulary, location, progress=True)
        if use_cache:
            atomic_write_bytes(path, json.dumps(table, ensure_ascii=False).encode("utf-8"))
        return cls(location, table)

    def stem(self, word: str) -> str:
        s = self._stems.get(word)
        if s is None:
            s = self._stems[word] = self._lookups.stem(word)
        return s

    def synonyms(self, word: str) -> frozenset[str]:
        syn = self._synonyms.get(word)
        if syn is None:
            syn = self._synonyms[word] = self._lookups.synonyms(word)
        return syn

    def score(self, reference: Sequence[str], hypothesis: Sequence[str]) -> float:
        """``nltk.translate.meteor_score.meteor_score([reference], hypothesis)``."""
        if isinstance(reference, str) or isinstance(hypothesis, str):
            raise TypeError("METEOR takes pre-tokenized reference and hypothesis (lists of str)")
        hyp = list(enumerate(w.lower() for w in hypothesis))
        ref = list(enumerate(w.lower() for w in reference))
        translation_length, reference_length = len(hyp), len(ref)

        exact, hyp, ref = _match_enums(hyp, ref)
        stem = self.stem
        hyp = [(i, stem(w)) for i, w in hyp]
        ref = [(j, stem(w)) for j, w in ref]
        stemmed, hyp, ref = _match_enums(hyp, ref)
        synonym = self._synonym_matches(hyp, ref)
        matches = sorted(exact + stemmed + synonym, key=lambda pair: pair[0])

        matches_count = len(matches)
        try:
            precision = float(matches_count) / translation_length
            recall = float(matches_count) / reference_length
            fmean = (precision * recall) / (ALPHA * precision + (1 - ALPHA) * recall)
            chunk_count = float(_count_chunks(matches))
            frag_frac = chunk_count / matches_count
        except ZeroDivisionError:
            return 0.0
        penalty = GAMMA * frag_frac**BETA
        return (1 - penalty) * fmean

    def _synonym_matches(self, hyp: list[tuple[int, str]], ref: list[tuple[int, str]]) -> list[tuple[int, int]]:
        # nltk's _enum_wordnetsyn_match; the synonym with the right-most remaining reference position wins
        # (positions are unique per word, so the set's iteration order cannot matter)
        if not hyp or not ref:
            return []
        ref_positions: dict[str, list[int]] = defaultdict(list)
        for j, (_, w) in enumerate(ref):
            ref_positions[w].append(j)
        matches = []
        for i in range(len(hyp) - 1, -1, -1):
            best_j, best_word = -1, None
            for syn in self.synonyms(hyp[i][1]):
                positions = ref_positions.get(syn)
                if positions and positions[-1] > best_j:
                    best_j, best_word = positions[-1], syn
            if best_word is not None:
                ref_positions[best_word].pop()
                matches.append((hyp[i][0], ref[best_j][0]))
        return matches

    def corpus_mean(self, references: Sequence[Sequence[str]], hypotheses: Sequence[Sequence[str]]) -> float:
        """Mean sentence METEOR over rows (MolT5's ``np.mean(meteor_scores)``)."""
        import numpy as np

        if len(references) != len(hypotheses):
            raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
        return float(np.mean([self.score(r, h) for r, h in zip(references, hypotheses)]))


def _match_enums(hyp: list[tuple[int, str]], ref: list[tuple[int, str]]):
    """nltk's _match_enums: exact word matches, right to left; returns (matches, unmatched hyp, unmatched ref)."""
    ref_positions: dict[str, list[int]] = defaultdict(list)
    for j, (_, w) in enumerate(ref):
        ref_positions[w].append(j)
    matched_h: set[int] = set()
    matched_r: set[int] = set()
    matches = []
    for i in range(len(hyp) - 1, -1, -1):
        positions = ref_positions.get(hyp[i][1])
        if positions:
            j = positions.pop()
            matched_h.add(i)
            matched_r.add(j)
            matches.append((hyp[i][0], ref[j][0]))
    if matches:
        hyp = [p for i, p in enumerate(hyp) if i not in matched_h]
        ref = [p for j, p in enumerate(ref) if j not in matched_r]
    return matches, hyp, ref


def _count_chunks(matches: list[tuple[int, int]]) -> int:
    i, chunks = 0, 1
    while i < len(matches) - 1:
        if matches[i + 1][0] == matches[i][0] + 1 and matches[i + 1][1] == matches[i][1] + 1:
            i += 1
            continue
        i += 1
        chunks += 1
    return chunks
