"""kNN-MT around the :mod:`datastore` package: building a task's store from a checkpoint (:mod:`.store`),
inspecting what retrieval changed (:mod:`.inspect`) and tuning λ, k and temperature (:mod:`.tune`)."""
