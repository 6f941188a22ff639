"""kNN-MT datastore: decoder states -> next tokens, FAISS retrieval, log-space interpolation.

Knows nothing of tasks or chemistry: it maps vectors to token ids. The pieces (knn-box's split):

- :mod:`datastore.params`   ``KNNParams`` (k, λ, T, scope): the one carrier of kNN parameters and their checks;
                            ``PartialKNNParams``: some of them chosen, the rest a store's
- :mod:`datastore.store`    the on-disk store (``Datastore.load``), fingerprints
- :mod:`datastore.build`    ``build_datastore`` (streaming, resumable, multi-process, atomic)
- :mod:`datastore.write`    ``write_datastore`` (a store from arrays), ``subset_datastore``; the one publish path
- :mod:`datastore.index`    FAISS index sized by the entry count or from a factory string, memory-mapped reads
- :mod:`datastore.retrieve` ``Retriever.search`` -> ``Neighbours``
- :mod:`datastore.combine`  ``mix_log_probs`` (the mixture, in log space), ``knn_log_probs``, ``interpolate_log_probs``
- :mod:`datastore.augment`  ``knn_generation`` context manager -> logits processors for ``generate``

Names are imported lazily so ``import datastore`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Datastore": "datastore.store",
    "DatastoreError": "datastore.store",
    "DatastoreMismatchError": "datastore.store",
    "KNNParams": "datastore.params",
    "PartialKNNParams": "datastore.params",
    "check_lambda": "datastore.params",
    "model_fingerprint": "datastore.store",
    "tokenizer_fingerprint": "datastore.store",
    "build_datastore": "datastore.build",
    "PairBatches": "datastore.build",
    "plain_encoder": "datastore.build",
    "build_index": "datastore.index",
    "write_datastore": "datastore.write",
    "subset_datastore": "datastore.write",
    "IndexFallbackWarning": "datastore.index",
    "DEFAULT_FACTORY": "datastore.index",
    "Retriever": "datastore.retrieve",
    "Neighbours": "datastore.retrieve",
    "RowRestrictedRetriever": "datastore.retrieve",
    "Restriction": "datastore.retrieve",
    "knn_log_probs": "datastore.combine",
    "interpolate_log_probs": "datastore.combine",
    "mix_log_probs": "datastore.combine",
    "mix_neighbours": "datastore.combine",
    "mix_target_log_probs": "datastore.combine",
    "knn_generation": "datastore.augment",
    "KNNLogitsProcessor": "datastore.augment",
    "StepTrace": "datastore.augment",
    "StateCapture": "datastore.hooks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'datastore' has no attribute {name!r}")
