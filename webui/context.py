"""The per-app objects a request reaches through Flask: the store lives in `current_app.extensions`.

Kept out of `webui/store` so the store never imports Flask (tests/test_layers.py checks it).
"""

from __future__ import annotations

from typing import cast

from flask import current_app

from webui.store import Store

EXTENSION_KEY = "ctrltower"


def get_store() -> Store:
    """The store of the current Flask app (inside a request or app context)."""
    return cast(Store, current_app.extensions[EXTENSION_KEY])
