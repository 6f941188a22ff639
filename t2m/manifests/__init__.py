"""Dataset manifests shipped with t2m (package data, read by :mod:`t2m.download`)."""
