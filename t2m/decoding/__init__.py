"""Decoding: :class:`t2m.decoding.translator.Translator` (beam search, kNN-MT, MBR, SMILES constraints),
the patched fast beam search (:mod:`.fast`), the SMILES grammar and valence constraints, MBR selection,
length-bucketed batching and the pool of decoding processes (:mod:`.pool`)."""
