"""The Flask application factory: `create_app(settings)` builds one app (one per worker process).

It registers the agent API (/api/agent/v1), the control API (/api/v1), the OpAMP endpoint (/v1/opamp), the
OpenAPI document (/api/openapi.json), the metrics API (`webui.metrics.api:bp` at /api/v1/metrics, the
proxy to the metrics process; `--no-metrics` leaves it out) and, when its module exists, the web UI
(`webui.ui.views:bp` at /). No module-level state: the store, the config cache and the settings live on
the app (`app.extensions["ctrltower"]`, `app.config["CTRLTOWER_SETTINGS"]`).
"""

from __future__ import annotations

import importlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any, cast

from flask import Blueprint, Flask, Response

from webui import datadir
from webui.api import agent as agent_api
from webui.api import collectors as collectors_api
from webui.api import control as control_api
from webui.api import revisions as revisions_api
from webui.api import rollouts as rollouts_api
from webui.context import EXTENSION_KEY
from webui.errors import json_response, register_error_handlers
from webui.metrics import api as metrics_api
from webui.metrics.client import failing_agents
from webui.opamp import endpoint as opamp_endpoint
from webui.openapi import openapi_document
from webui.settings import SETTINGS_KEY, ServerSettings
from webui.store import Store
from webui.store.base import Clock, ScrapeHealth

log = logging.getLogger(__name__)


def create_app(
    settings: ServerSettings,
    *,
    store: Store | None = None,
    clock: Clock | None = None,
    scrape_failing: ScrapeHealth | None = None,
) -> Flask:
    """Build the app. `store`, `clock` and `scrape_failing` are injectable for tests."""
    app = Flask("webui", static_folder=None)
    app.config[SETTINGS_KEY] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["JSON_SORT_KEYS"] = False
    if scrape_failing is None and settings.metrics:
        scrape_failing = _metrics_scrape_health(settings)
    if store is None:
        store = Store.from_settings(settings, clock=clock or time.time, scrape_failing=scrape_failing)
    if settings.secret_key:
        app.secret_key = settings.secret_key
    elif settings.database_url:  # replicas share no data dir: the key lives in the shared database
        app.secret_key = store.shared_secret("flask-session")
    else:
        app.secret_key = _secret_key(settings.data_dir)
    app.extensions[EXTENSION_KEY] = store
    cache = agent_api.ConfigCache(store)
    app.extensions[agent_api.CACHE_KEY] = cache
    # The config poll (every agent, every few seconds) skips Flask; everything else goes through it.
    app.wsgi_app = agent_api.ConfigFastPath(app.wsgi_app, cache)  # type: ignore[method-assign]
    if settings.behind_proxy:
        # One proxy in front: its X-Forwarded-For / -Proto become the client address and the scheme
        # (scrape URLs, the Secure cookie). Off by default: anyone could send those headers.
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]
    register_error_handlers(app)

    app.register_blueprint(agent_api.bp, url_prefix="/api/agent/v1")
    app.register_blueprint(control_api.bp, url_prefix="/api/v1")
    app.register_blueprint(revisions_api.bp, url_prefix="/api/v1")
    app.register_blueprint(rollouts_api.bp, url_prefix="/api/v1")
    app.register_blueprint(collectors_api.bp, url_prefix="/api/v1")
    app.register_blueprint(_meta_blueprint(), url_prefix="/api")
    app.register_blueprint(opamp_endpoint.bp)  # POST /v1/opamp (protobuf, outside /api: the OpAMP path)
    if settings.metrics:
        app.register_blueprint(metrics_api.bp, url_prefix="/api/v1/metrics")
    ui_bp = _optional_blueprint("webui.ui.views") if settings.ui else None
    if ui_bp is not None:
        app.register_blueprint(ui_bp)
    return app


def _meta_blueprint() -> Blueprint:
    bp = Blueprint("meta_api", __name__)

    @bp.get("/health")
    def health() -> Response:
        """Liveness and readiness: the database answers. No auth."""
        from webui.context import get_store

        get_store().counters()
        return json_response({"status": "ok"})

    @bp.get("/openapi.json")
    def openapi() -> Response:
        """The OpenAPI 3.1 document of every /api route. No auth."""
        from flask import current_app

        # Routes do not change once the app serves: build the document once per worker.
        doc = current_app.extensions.get("ctrltower.openapi")
        if doc is None:
            doc = current_app.extensions["ctrltower.openapi"] = openapi_document(current_app)
        return json_response(doc)

    health.api_doc_public = True  # type: ignore[attr-defined]
    openapi.api_doc_public = True  # type: ignore[attr-defined]
    return bp


def _optional_blueprint(module_name: str) -> Blueprint | None:
    """`module_name:bp` if that module exists (another part's), else None. Import errors inside it raise."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            return None
        raise
    bp = getattr(module, "bp", None)
    return bp if isinstance(bp, Blueprint) else None


def _metrics_scrape_health(settings: ServerSettings) -> ScrapeHealth:
    """The metrics process's scrape health (`webui.metrics.client.failing_agents`: ids of agents whose
    scrapes fail; empty when the process is down), cached for a second."""
    # The fleet page asks on every request; the answer changes once per scrape interval at most.
    cache: dict[str, Any] = {"at": -1e9, "value": frozenset()}
    lock = threading.Lock()

    def failing() -> Collection[str]:
        now = time.monotonic()
        with lock:
            if now - cache["at"] < 1.0:
                return cast(frozenset[str], cache["value"])
        value = frozenset(failing_agents(settings))
        with lock:
            cache["at"], cache["value"] = now, value
        return value

    return failing


def _secret_key(data_dir: Path) -> str:
    """The Flask session key, shared by all workers through DATA_DIR/secret.key (created 0600)."""
    path = data_dir / datadir.SECRET_KEY
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another worker may be writing it right now
            text = path.read_text().strip()
            if text:
                return text
            time.sleep(0.02)
        raise RuntimeError(f"{path} is empty") from None
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key
