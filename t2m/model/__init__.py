"""The model: loading and saving checkpoints with their decoding defaults (:mod:`.checkpoint`) and the
T5 with a copy head (:mod:`.copy_head`)."""
