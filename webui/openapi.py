"""The OpenAPI 3.1 document of /api, generated from the registered routes and the pydantic models.

Every `/api/...` rule of the app appears (a test keeps it so). Views decorated with `webui.api.doc`
contribute summary, body, response, query parameters and error statuses; `require_role` contributes the
roles (as `x-roles`) and the bearer security requirement.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from webui.api import ApiDoc
from webui.auth import roles_of

_CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")
_REF = "#/components/schemas/{model}"
_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    304: "Not modified (ETag matches If-None-Match)",
    400: "Bad request (malformed JSON or parameters)",
    401: "Missing or invalid token",
    403: "The token's role may not do this",
    404: "Not found",
    409: "Conflict",
    413: "Request body too large",
    422: "The body does not match the schema",
}


def openapi_path(rule: str) -> tuple[str, list[tuple[str, str]]]:
    """`/agents/<int:id>` -> (`/agents/{id}`, [(id, int)])."""
    params: list[tuple[str, str]] = []

    def repl(m: re.Match[str]) -> str:
        params.append((m.group(2), m.group(1) or "string"))
        return "{" + m.group(2) + "}"

    return _CONVERTER.sub(repl, rule), params


def api_rules(app: Flask) -> list[tuple[str, str, str]]:
    """(method, openapi path, endpoint) for every /api route, sorted."""
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path, _ = openapi_path(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((method, path, rule.endpoint))
    return sorted(out)


def openapi_document(app: Flask) -> dict[str, Any]:
    models: dict[type[BaseModel], str] = {}
    docs: dict[str, ApiDoc | None] = {}
    for rule in app.url_map.iter_rules():
        view = app.view_functions.get(rule.endpoint)
        d = getattr(view, "api_doc", None)
        docs[rule.endpoint] = d if isinstance(d, ApiDoc) else None
        if isinstance(d, ApiDoc):
            if d.body is not None:
                models[d.body] = "validation"
            if d.response is not None:
                models.setdefault(d.response, "serialization")
    from schemas.api import ErrorBody

    models.setdefault(ErrorBody, "serialization")
    keys = [(m, mode) for m, mode in models.items()]
    refs, schema = models_json_schema(keys, ref_template=_REF, by_alias=True)  # type: ignore[arg-type]
    components = dict(schema.get("$defs", {}))

    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        return dict(refs[(model, mode)])  # type: ignore[index]

    error_ref = ref(ErrorBody, "serialization")
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith("/api/"):
            continue
        path, params = openapi_path(rule.rule)
        view = app.view_functions.get(rule.endpoint)
        d = docs.get(rule.endpoint)
        roles = roles_of(view)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            op: dict[str, Any] = {
                "operationId": f"{rule.endpoint}_{method.lower()}".replace(".", "_"),
                "summary": d.summary if d else ((view.__doc__ or rule.endpoint).strip().splitlines()[0]),
                "parameters": [
                    {
                        "name": name,
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer" if conv == "int" else "string"},
                    }
                    for name, conv in params
                ],
                "responses": {},
            }
            if d is not None:
                for q in d.query:
                    qs: dict[str, Any] = {"type": q.type}
                    if q.minimum is not None:
                        qs["minimum"] = q.minimum
                    if q.maximum is not None:
                        qs["maximum"] = q.maximum
                    if q.enum is not None:
                        qs["enum"] = list(q.enum)
                    if q.pattern is not None:
                        qs["pattern"] = q.pattern
                    if q.repeat:
                        qs = {"type": "array", "items": qs}
                    op["parameters"].append(
                        {
                            "name": q.name,
                            "in": "query",
                            "required": False,
                            "description": q.description,
                            "schema": qs,
                        }
                    )
                if d.body is not None:
                    op["requestBody"] = {
                        "required": True,
                        "content": {"application/json": {"schema": ref(d.body, "validation")}},
                    }
                ok: dict[str, Any] = {"description": _STATUS_TEXT.get(d.status, "OK")}
                if d.response is not None:
                    ok["content"] = {"application/json": {"schema": ref(d.response, "serialization")}}
                elif d.response_media != "application/json":
                    ok["content"] = {d.response_media: {"schema": {"type": "string"}}}
                for status in (d.status, *d.also_ok):
                    op["responses"][str(status)] = {**ok, "description": _STATUS_TEXT.get(status, "OK")}
                for status in d.errors:
                    entry: dict[str, Any] = {"description": _STATUS_TEXT.get(status, "Error")}
                    if status >= 400:
                        entry["content"] = {"application/json": {"schema": error_ref}}
                    op["responses"][str(status)] = entry
            else:
                op["responses"]["200"] = {"description": "OK"}
            if roles is not None:
                op["security"] = [{"bearer": []}]
                op["x-roles"] = list(roles)
                op["responses"].setdefault(
                    "401",
                    {
                        "description": _STATUS_TEXT[401],
                        "content": {"application/json": {"schema": error_ref}},
                    },
                )
            elif rule.endpoint.startswith("agent_api."):
                op["security"] = [{"bearer": []}]
                op["x-roles"] = ["agent"]
            if not op["parameters"]:
                del op["parameters"]
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "ctrltower control plane API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
