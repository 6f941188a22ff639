"""Similarity search over training pairs, no model: for each query, the most similar database rows.

- molecules (:class:`MoleculeSimilarity`): Morgan bit vectors (radius 2, 2048 bits), Tanimoto similarity
  (exactly RDKit's ``BulkTanimotoSimilarity``, computed as sparse products over blocks of
  queries). A query SMILES RDKit cannot parse (or an empty one) falls back to the
  database SMILES most similar *as text* (TF-IDF over character 1–4-grams, cosine) and is flagged in
  :attr:`Nearest.fallback`.
- texts (:class:`TextSimilarity`): TF-IDF over word 1–2-grams with sublinear term frequency (``1 + log tf``;
  scikit-learn defaults otherwise: lower-cased, ``\\b\\w\\w+\\b`` tokens, smoothed idf, l2-normalised rows),
  cosine similarity. A query sharing no term with any database description gets the first row, flagged.

Ties go to the earliest database row, so results are deterministic. Used by the retrieval baselines
(:mod:`t2m.neighbours.baselines`), the neighbour database (:mod:`t2m.neighbours.database`) and
pair-restricted kNN-MT (:mod:`t2m.neighbours.pairs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from t2m.chem import morgan_fingerprints

QUERY_CHUNK = 256  # text queries scored per sparse product: (256, database) floats at a time
BLOCK_VALUES = 1 << 24  # at most this many floats in one (queries, database) block


@dataclass
class Nearest:
    """One retrieval per query: the output, the database row it came from, and how it was found."""

    outputs: list[str]
    neighbours: list[int]  # database row of each output
    similarities: list[float]  # Tanimoto (mol2text) or cosine (text2mol) to that row; 0.0 on fallback with no match
    fallback: list[bool]  # True where the input could not be used as intended (see the module docstring)

    @property
    def n_fallback(self) -> int:
        return sum(self.fallback)


def top_rows(scores: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` highest-scoring positions of ``scores``, best first; ties go to the earliest position.
    Linear in ``len(scores)``: only the positions at or above the ``n``-th highest score are sorted."""
    scores = np.asarray(scores)
    if n >= len(scores):
        return np.argsort(-scores, kind="stable")[:n]
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    threshold = np.partition(scores, len(scores) - n)[len(scores) - n]  # the n-th highest
    candidates = np.flatnonzero(scores >= threshold)  # ascending positions: a stable sort keeps ties in order
    return candidates[np.argsort(-scores[candidates], kind="stable")[:n]]


def _cosine_blocks(vectorizer, database_matrix, queries: Sequence[str]):
    """``(start, block)`` for each chunk of ``QUERY_CHUNK`` queries: ``block`` (chunk, database) holds their
    cosines to every database row (rows are l2-normalised, so a dot product is the cosine)."""
    query_matrix = vectorizer.transform(list(queries))  # (queries, vocabulary), sparse
    chunk = block_rows(database_matrix.shape[0])
    for start in range(0, len(queries), chunk):
        yield start, (query_matrix[start:start + chunk] @ database_matrix.T).toarray()


def block_rows(database_rows: int) -> int:
    """Queries scored per dense (queries, database) block: :data:`QUERY_CHUNK`, fewer for a large database
    so that a block stays within :data:`BLOCK_VALUES` floats (128 MB)."""
    return max(1, min(QUERY_CHUNK, BLOCK_VALUES // max(1, database_rows)))


def _top_by_tfidf(vectorizer, database_matrix, queries: Sequence[str], n: int) -> list[np.ndarray]:
    """The ``n`` database rows nearest each query by cosine, best first (ties: earliest row)."""
    if not len(queries):
        return []
    return [top_rows(scores, n) for _, block in _cosine_blocks(vectorizer, database_matrix, queries)
            for scores in block]


def _nearest_by_tfidf(vectorizer, database_matrix, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(row, cosine) of the nearest database row for each query. Ties go to the earliest row."""
    rows = np.zeros(len(queries), dtype=np.int64)
    scores = np.zeros(len(queries), dtype=np.float64)
    for start, block in _cosine_blocks(vectorizer, database_matrix, queries):
        rows[start:start + len(block)] = block.argmax(axis=1)
        scores[start:start + len(block)] = block.max(axis=1)
    return rows, scores


class MoleculeSimilarity:
    """The database molecules most similar to a query SMILES, by Morgan-fingerprint Tanimoto; each row's
    answer is its caption (the mol2text baseline)."""

    def __init__(self, smiles: Sequence[str], captions: Sequence[str], *, radius: int = 2, n_bits: int = 2048):
        smiles, captions = list(smiles), list(captions)
        if len(smiles) != len(captions) or not smiles:
            raise ValueError(f"need one caption per SMILES and at least one pair (got {len(smiles)} SMILES, {len(captions)} captions)")
        self.smiles, self.captions, self.radius, self.n_bits = smiles, captions, radius, n_bits
        fingerprints = morgan_fingerprints(smiles, radius, n_bits)
        # Database molecules RDKit cannot parse cannot be found by fingerprint (only by the text fallback).
        self._fp_rows = np.array([i for i, fp in enumerate(fingerprints) if fp is not None], dtype=np.int64)
        self._bits = bit_matrix([fingerprints[i] for i in self._fp_rows], n_bits)  # (rows, n_bits), sparse 0/1
        self._bit_counts = np.asarray(self._bits.getnnz(axis=1), dtype=np.float64)
        self._text_index = None  # the SMILES-text fallback, built when a query first needs it

    def _text_fallback(self):
        """(vectorizer, matrix): character 1-4-gram TF-IDF of the database SMILES, for unparsable queries."""
        if self._text_index is None:
            from sklearn.feature_extraction.text import TfidfVectorizer

            vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 4), lowercase=False)
            self._text_index = (vectorizer, vectorizer.fit_transform(self.smiles))
        return self._text_index

    def most_similar(self, queries: Sequence[str], *, progress: bool = True) -> Nearest:
        found = self._search(queries, 1, progress)
        return Nearest(outputs=[self.captions[int(rows[0])] for rows, _, _ in found],
                         neighbours=[int(rows[0]) for rows, _, _ in found],
                         similarities=[float(scores[0]) for _, scores, _ in found],
                         fallback=[by_text for _, _, by_text in found])

    def nearest_rows(self, queries: Sequence[str], n: int) -> list[np.ndarray]:
        """The ``n`` database rows most similar to each query molecule, best first (Morgan Tanimoto; an
        input RDKit cannot parse by its SMILES text, as in :meth:`retrieve`)."""
        return [rows for rows, _, _ in self._search(queries, n, progress=False)]

    def search(self, queries: Sequence[str], n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query: its ``n`` nearest database rows, best first, and their similarities (Morgan Tanimoto;
        SMILES-text TF-IDF cosine for a query RDKit cannot parse)."""
        return [(rows, scores) for rows, scores, _ in self._search(queries, n, progress=False)]

    def _tanimoto(self, fingerprints: Sequence) -> np.ndarray:
        """(queries, database molecules) Tanimoto similarities: bits in common / bits in either, as RDKit's
        ``BulkTanimotoSimilarity`` gives them (the counts are exact in float32, the ratio taken in float64),
        by one sparse product per block of queries instead of one database scan per query."""
        queries = bit_matrix(fingerprints, self.n_bits)
        common = (queries @ self._bits.T).toarray().astype(np.float64)
        either = np.asarray(queries.getnnz(axis=1), dtype=np.float64)[:, None] + self._bit_counts[None, :] - common
        return np.divide(common, either, out=np.zeros_like(common), where=either > 0)

    def _search(self, queries: Sequence[str], n: int, progress: bool) -> list[tuple[np.ndarray, np.ndarray, bool]]:
        """Per query: its ``n`` nearest database rows, best first (ties: earliest row), their similarities,
        and whether they were found by the SMILES-text fallback (character 1–4-gram TF-IDF cosine), used
        for a query RDKit cannot parse."""
        found: list[tuple[np.ndarray, np.ndarray, bool] | None] = [None] * len(queries)
        fingerprints = morgan_fingerprints(list(queries), self.radius, self.n_bits)
        valid = [i for i, fp in enumerate(fingerprints) if fp is not None] if len(self._fp_rows) else []
        chunk = block_rows(len(self._fp_rows))
        with tqdm(total=len(queries), desc="mol2text retrieval", unit="mol", disable=not progress) as bar:
            for start in range(0, len(valid), chunk):
                rows = valid[start:start + chunk]
                for i, scores in zip(rows, self._tanimoto([fingerprints[i] for i in rows])):
                    top = top_rows(scores, n)
                    found[i] = (self._fp_rows[top], scores[top], False)
                bar.update(len(rows))
            bar.update(len(queries) - len(valid))
        invalid = [i for i, hit in enumerate(found) if hit is None]
        if invalid:
            for start, block in _cosine_blocks(*self._text_fallback(), [queries[i] for i in invalid]):
                for j, scores in enumerate(block):
                    top = top_rows(scores, n)
                    found[invalid[start + j]] = (top, scores[top], True)
        return found  # type: ignore[return-value]


def bit_matrix(fingerprints: Sequence, n_bits: int):
    """The on-bits of RDKit bit vectors as a sparse (fingerprints, n_bits) float32 matrix of ones."""
    from scipy.sparse import csr_matrix

    on_bits = [np.asarray(list(fp.GetOnBits()), dtype=np.int32) for fp in fingerprints]
    indptr = np.zeros(len(on_bits) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(b) for b in on_bits])
    indices = np.concatenate(on_bits) if on_bits else np.zeros(0, dtype=np.int32)
    return csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(len(on_bits), n_bits))


class TextSimilarity:
    """The database descriptions most similar to a query, by TF-IDF (word 1–2-grams, sublinear tf) cosine;
    each row's answer is its SMILES (the text2mol baseline)."""

    def __init__(self, descriptions: Sequence[str], smiles: Sequence[str], *, ngram_range: tuple[int, int] = (1, 2)):
        from sklearn.feature_extraction.text import TfidfVectorizer

        descriptions, smiles = list(descriptions), list(smiles)
        if len(descriptions) != len(smiles) or not smiles:
            raise ValueError(f"need one SMILES per description and at least one pair (got {len(descriptions)} descriptions, {len(smiles)} SMILES)")
        self.descriptions, self.smiles = descriptions, smiles
        self._vectorizer = TfidfVectorizer(ngram_range=ngram_range, sublinear_tf=True)
        self._matrix = self._vectorizer.fit_transform(descriptions)  # (database, vocabulary), l2-normalised rows

    def most_similar(self, queries: Sequence[str], *, progress: bool = True) -> Nearest:
        rows, scores = _nearest_by_tfidf(self._vectorizer, self._matrix, queries)
        return Nearest(
            outputs=[self.smiles[int(r)] for r in rows],
            neighbours=[int(r) for r in rows],
            similarities=[float(s) for s in scores],
            fallback=[bool(s <= 0.0) for s in scores],
        )

    def nearest_rows(self, queries: Sequence[str], n: int) -> list[np.ndarray]:
        """The ``n`` database rows whose descriptions are most similar to each query, best first."""
        return _top_by_tfidf(self._vectorizer, self._matrix, queries, n)

    def search(self, queries: Sequence[str], n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query: its ``n`` nearest database rows, best first (ties: earliest row), and their cosines."""
        found = []
        for _, block in _cosine_blocks(self._vectorizer, self._matrix, queries):
            for scores in block:
                top = top_rows(scores, n)
                found.append((top, scores[top]))
        return found
