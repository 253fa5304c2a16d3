"""The OpenAPI 3.1 document, generated from the route table and the handlers' own pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from engine.service.api.models import ErrorBody, JobOptions, JobSubmission, RemixOptions, TuneOptions
from engine.service.api.routes import Route

REF = "#/components/schemas/{model}"
# The multipart routes: the options part's schema, and what the image part may be.
OPTIONS = {"/v1/jobs": "JobOptions", "/v1/remixes": "RemixOptions", "/v1/admin/tunes": "TuneOptions"}
CLIPS = "image/gif, video/mp4, video/webm, image/webp, image/png"
MEDIA = {
    "/v1/jobs": "image/png, image/jpeg, image/webp, image/gif, image/bmp", "/v1/remixes": CLIPS,
    "/v1/admin/tunes": CLIPS,
}  # fmt: skip
SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "public": [],
    "bot": [{"botToken": []}, {"adminToken": []}],
    "admin": [{"adminToken": []}],
}
AUTH_RESPONSES = {
    "bot": {401: "No token, or a wrong one."},
    "admin": {401: "No token, or not the admin token.", 403: "The admin API is disabled (no ENGINE_ADMIN_TOKEN)."},
}


def build_spec(routes: tuple[Route, ...], *, version: str) -> dict[str, Any]:
    """The whole document: one operation per route, every answer with its schema, both bearer schemes."""
    models = _models(routes)
    refs, top = models_json_schema([(m, mode) for m, mode in models], ref_template=REF)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Make It Move engine",
            "version": version,
            "description": "Memes in, animated GIF/MP4/WebP out. Bots send ENGINE_TOKEN; admins ENGINE_ADMIN_TOKEN.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "botToken": {"type": "http", "scheme": "bearer", "description": "ENGINE_TOKEN"},
                "adminToken": {"type": "http", "scheme": "bearer", "description": "ENGINE_ADMIN_TOKEN"},
            },
        },
    }


def _models(routes: tuple[Route, ...]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    found: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (JobOptions, "validation"), (RemixOptions, "validation"), (TuneOptions, "validation"),
    ]  # fmt: skip
    for route in routes:
        if isinstance(route.body, type):
            found.append((route.body, "validation"))
        for _, body in route.responses.values():
            if isinstance(body, type):
                found.append((body, "serialization"))
    found.append((JobSubmission, "validation"))
    return list(dict.fromkeys(found))


def _ref(refs: dict[Any, Any], model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
    return dict(refs[(model, mode)])


def _operation(route: Route, refs: dict[Any, Any]) -> dict[str, Any]:
    doc = (route.handler.__doc__ or "").strip()
    what = doc.partition(": ")[2] or doc
    operation: dict[str, Any] = {
        "operationId": route.handler.__name__,
        "summary": what[:1].upper() + what[1:],
        "description": doc,
        "tags": [route.tag],
        "security": SECURITY[route.access],
        "responses": {},
    }
    if route.params:
        operation["parameters"] = [
            {"name": p.name, "in": p.where, "required": p.where == "path", "schema": p.schema}
            | ({"description": p.description} if p.description else {})
            for p in route.params
        ]
    if route.body == "multipart":
        operation["requestBody"] = {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": _ref(refs, JobSubmission, "validation"),
                    "encoding": {"image": {"contentType": MEDIA[route.path]}},
                }
            },
        }
        operation["parameters"] = [
            {"name": "Idempotency-Key", "in": "header", "required": False,
             "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,200}$"},
             "description": "a repeat with the same key returns the same job"},
        ]  # fmt: skip
        options = OPTIONS[route.path]
        operation["description"] += f" The options part is a JSON object: see the {options} schema."
    elif isinstance(route.body, type):
        required = route.method != "DELETE"
        operation["requestBody"] = {
            "required": required,
            "content": {"application/json": {"schema": _ref(refs, route.body, "validation")}},
        }
    answers: dict[int, tuple[str, Any]] = dict(route.responses)
    for status, text in AUTH_RESPONSES.get(route.access, {}).items():
        answers.setdefault(status, (text, ErrorBody))
    answers.setdefault(500, ("Something went wrong inside the engine.", ErrorBody))
    if route.body is not None:
        answers.setdefault(413, ("The request body is too large.", ErrorBody))
        answers.setdefault(408, ("The body arrived too slowly ([engine] body_timeout_s, body_min_rate).", ErrorBody))
    for status in sorted(answers):
        text, body = answers[status]
        answer: dict[str, Any] = {"description": text}
        if isinstance(body, type):
            answer["content"] = {"application/json": {"schema": _ref(refs, body, "serialization")}}
        elif body == "application/octet-stream":
            answer["content"] = {
                media: {"schema": {"type": "string", "contentMediaType": media}}
                for media in ("image/gif", "video/mp4", "image/webp")
            }
        else:
            answer["content"] = {body: {"schema": {"type": "object" if body == "application/json" else "string"}}}
        if status == 429:
            answer["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
        operation["responses"][str(status)] = answer
    return operation
