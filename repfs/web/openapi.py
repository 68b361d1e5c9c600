"""The OpenAPI 3.1 document of the API, served at /api/v1/openapi.json. A test checks that
it names every route the application serves, and docs/API.md says the same in prose."""
# ruff: noqa: E501 - a document: its lines are its structure

from __future__ import annotations

from typing import Any

from repfs import __version__


def _err(*codes: int) -> dict[str, Any]:
    return {str(c): {"$ref": "#/components/responses/Error"} for c in codes}


def _ok(code: int, schema: str | None = None, text: str = "done") -> dict[str, Any]:
    if schema is None:
        return {str(code): {"description": text}}
    body = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    return {str(code): {"description": text, "content": body}}


PATH = {"name": "path", "in": "path", "required": True, "schema": {"type": "string"},
        "description": "relative to the root of the filesystem, e.g. alice/docs/a.txt"}  # fmt: skip
AUTH_ERRORS = (401, 503)

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "repfs API", "version": __version__,
             "description": "Files, folders and accounts of a repfs filesystem, as the signed-in account."},
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}],
    "paths": {
        "/api/v1/health": {"get": {"summary": "Whether the web process answers", "security": [],
                                   "responses": _ok(200, text="{ok: true}")}},
        "/api/v1/openapi.json": {"get": {"summary": "This document", "security": [], "responses": _ok(200)}},
        "/api/v1/token": {
            "post": {"summary": "Sign in: a bearer token", "security": [],
                     "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Login"}}}},
                     "responses": {**_ok(201, "Token"), **_err(400, 401, 429, 503)}},
            "delete": {"summary": "Sign out: the token ends", "responses": _ok(204)},
        },
        "/api/v1/me": {"get": {"summary": "The signed-in account, its usage and quota",
                               "responses": {**_ok(200, "Me"), **_err(*AUTH_ERRORS)}}},
        "/api/v1/me/password": {"put": {
            "summary": "Change one's password (every session ends)",
            "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Password"}}}},
            "responses": {**_ok(200), **_err(400, 403, *AUTH_ERRORS)}}},
        "/api/v1/list": {"get": {"summary": "The root folder's entries", "parameters": [
            {"$ref": "#/components/parameters/offset"}, {"$ref": "#/components/parameters/limit"},
            {"$ref": "#/components/parameters/sort"}, {"$ref": "#/components/parameters/order"}],
            "responses": {**_ok(200, "Listing"), **_err(400, 403, 404, *AUTH_ERRORS)}}},
        "/api/v1/list/{path}": {"get": {"summary": "A folder's entries, sorted and paged", "parameters": [
            PATH, {"$ref": "#/components/parameters/offset"}, {"$ref": "#/components/parameters/limit"},
            {"$ref": "#/components/parameters/sort"}, {"$ref": "#/components/parameters/order"}],
            "responses": {**_ok(200, "Listing"), **_err(400, 403, 404, *AUTH_ERRORS)}}},
        "/api/v1/stat/{path}": {"get": {"summary": "One entry", "parameters": [PATH],
                                        "responses": {**_ok(200, "Entry"), **_err(403, 404, *AUTH_ERRORS)}}},
        "/api/v1/info/{path}": {"get": {"summary": "What repfs knows of it: ingest time, hold, retention, shares",
                                        "parameters": [PATH], "responses": {**_ok(200), **_err(404, *AUTH_ERRORS)}}},
        "/api/v1/files/{path}": {
            "get": {"summary": "Download (Range, ETag, If-None-Match)", "parameters": [PATH],
                    "responses": {"200": {"description": "the file", "content": {"application/octet-stream": {}}},
                                  "206": {"description": "the range asked for"}, "304": {"description": "unchanged"},
                                  **_err(403, 404, 409, 416, *AUTH_ERRORS)}},
            "put": {"summary": "Upload a file whole (replaced atomically when complete)", "parameters": [PATH],
                    "requestBody": {"content": {"application/octet-stream": {}}},
                    "responses": {**_ok(201, "Entry", "created"), **_ok(200, "Entry", "replaced"),
                                  **_err(403, 404, 409, 413, 423, 507, *AUTH_ERRORS)}},
            "delete": {"summary": "Delete a file or an empty folder", "parameters": [PATH],
                       "responses": {**_ok(204), **_err(403, 404, 409, 423, *AUTH_ERRORS)}},
        },
        "/api/v1/folders/{path}": {"post": {"summary": "Make a folder", "parameters": [PATH],
                                            "responses": {**_ok(201, "Entry"), **_err(403, 404, 409, 507, *AUTH_ERRORS)}}},
        "/api/v1/move": {"post": {
            "summary": "Move or rename",
            "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Move"}}}},
            "responses": {**_ok(200, "Entry"), **_err(400, 403, 404, 409, 423, *AUTH_ERRORS)}}},
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "parameters": {
            "offset": {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
            "limit": {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000,
                                                                 "default": 1000}},
            "sort": {"name": "sort", "in": "query", "schema": {"enum": ["name", "size", "mtime", "kind"]}},
            "order": {"name": "order", "in": "query", "schema": {"enum": ["asc", "desc"]}},
        },
        "responses": {"Error": {"description": "an error", "content": {"application/json": {"schema": {
            "$ref": "#/components/schemas/Error"}}}}},
        "schemas": {
            "Error": {"type": "object", "required": ["error", "message"],
                      "properties": {"error": {"type": "string"}, "message": {"type": "string"}}},
            "Login": {"type": "object", "required": ["login", "password"],
                      "properties": {"login": {"type": "string", "description": "account name or email"},
                                     "password": {"type": "string"}}},
            "Token": {"type": "object", "properties": {"token": {"type": "string"}, "expires": {"type": "number"},
                                                       "account": {"type": "object"}}},
            "Me": {"type": "object", "properties": {"name": {"type": "string"}, "usage": {"type": "object"},
                                                    "quota": {"type": "object"}}},
            "Password": {"type": "object", "required": ["old_password", "password"],
                         "properties": {"old_password": {"type": "string"}, "password": {"type": "string"}}},
            "Entry": {"type": "object", "properties": {
                "name": {"type": "string"}, "path": {"type": "string"},
                "kind": {"enum": ["file", "folder", "symlink", "other"]}, "size": {"type": "integer"},
                "mtime": {"type": "number"}, "mode": {"type": "string"}, "uid": {"type": "integer"},
                "gid": {"type": "integer"}, "target": {"type": ["string", "null"]}, "etag": {"type": "string"}}},
            "Listing": {"type": "object", "properties": {
                "path": {"type": "string"}, "total": {"type": "integer"}, "offset": {"type": "integer"},
                "entries": {"type": "array", "items": {"$ref": "#/components/schemas/Entry"}}}},
            "Move": {"type": "object", "required": ["from", "to"],
                     "properties": {"from": {"type": "string"}, "to": {"type": "string"}, "replace": {"type": "boolean"}}},
        },
    },
}  # fmt: skip
