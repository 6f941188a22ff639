"""Nearest training pairs by similarity, no model: the molecule and text similarity search
(:mod:`.similarity`), the retrieval baselines (:mod:`.baselines`), the neighbour database given to the
model as context (:mod:`.database`), its learned ranker (:mod:`.ranker`) and the training pairs nearest an
input for pair-restricted kNN-MT (:mod:`.pairs`)."""
