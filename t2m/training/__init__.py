"""Training one shared-encoder T5 on both tasks: the trainer (:mod:`.trainer`), its configuration
(:mod:`.config`), its examples (:mod:`.data`) and its loss kernels (:mod:`.kernels`)."""
