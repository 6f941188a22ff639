"""``t2m serve``: a local web page over the translator, both directions, and the JSON API under it.

- :mod:`t2m.serve.service`: the loaded model, the limits, one model call at a time, the answers' JSON;
- :mod:`t2m.serve.files`: uploaded files translated in the background, written as ``t2m translate`` writes;
- :mod:`t2m.serve.app`: the Starlette app (:func:`create_app`), its routes and errors;
- ``static/``: the page (HTML, script, style), served from the package: it works with no network.

Needs the ``serve`` extra (``pip install -e '.[serve]'``: Starlette and uvicorn). See docs/serve.md.
"""

from __future__ import annotations

from t2m.serve.app import create_app as create


def create_app(*args, **kwargs):
    """:func:`t2m.serve.app.create_app` (imported on first use: Starlette is an optional dependency)."""
    return create(*args, **kwargs)
