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
NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}, "description": "an account name"}

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
        "/api/v1/password/link": {"post": {
            "summary": "Set the password a welcome mail's one-time link names (the link is used up)", "security": [],
            "requestBody": {"content": {"application/json": {"schema": {"type": "object", "required": ["token", "password"],
                            "properties": {"token": {"type": "string"}, "password": {"type": "string"}}}}}},
            "responses": {**_ok(200), **_err(400, 403, 503)}}},
        "/welcome": {"get": {"summary": "The page a welcome link opens (the token travels in the fragment)", "security": [],
                             "responses": _ok(200, text="an HTML page")}},
        "/welcome.js": {"get": {"summary": "The welcome page's script", "security": [], "responses": _ok(200)}},
        "/api/v1/files": {"get": {
            "summary": "The files with a content (SHA-256) the caller may read; pending: files not hashed yet",
            "parameters": [{"name": "sha256", "in": "query", "required": True, "schema": {"type": "string"}}],
            "responses": {**_ok(200, text="{sha256, files: [{path, size, mtime}], pending, complete}"), **_err(400, *AUTH_ERRORS)}}},
        "/api/v1/by-sha256/{hex}": {"get": {
            "summary": "Download a file with that content (the first the caller may read, by path)",
            "parameters": [{"name": "hex", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {**_ok(200, text="the file"), **_err(400, 403, 404, 416, *AUTH_ERRORS)}}},
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
        "/api/v1/uploads": {
            "options": {"summary": "tus: the protocol's version, extensions, largest size and checksums", "security": [],
                        "responses": _ok(204)},
            "post": {"summary": "tus: create an upload (Upload-Length, Upload-Metadata: path or folder+filename; Upload-Concat; a first chunk may come along)",
                     "responses": {"201": {"description": "made: Location, Upload-Offset, Upload-Expires"}, **_err(400, 403, 404, 412, 413, 423, 507, *AUTH_ERRORS)}},
        },
        "/api/v1/uploads/{id}": {
            "head": {"summary": "tus: where the upload is (Upload-Offset: durable bytes)", "responses": {"200": {"description": "Upload-Offset, Upload-Length"}, **_err(404, 412, *AUTH_ERRORS)}},
            "patch": {"summary": "tus: the next bytes at Upload-Offset (Upload-Checksum: sha256 or sha1)",
                      "requestBody": {"content": {"application/offset+octet-stream": {}}},
                      "responses": {"204": {"description": "taken: the new Upload-Offset"}, "460": {"description": "checksum mismatch: resend the chunk"},
                                    **_err(400, 403, 404, 409, 412, 413, 415, 423, 507, *AUTH_ERRORS)}},
            "delete": {"summary": "tus: end an upload and drop its bytes", "responses": {**_ok(204), **_err(404, 412, *AUTH_ERRORS)}},
        },
        "/api/v1/shares": {
            "get": {"summary": "Shares of what the account owns, and those it was given", "responses": {**_ok(200), **_err(*AUTH_ERRORS)}},
            "post": {"summary": "Share a file or folder: {path, user, role: reader|editor|master}", "responses": {**_ok(201), **_err(400, 403, 404, *AUTH_ERRORS)}},
            "delete": {"summary": "Remove a share: ?path=P&user=U", "parameters": [
                {"name": "path", "in": "query", "required": True, "schema": {"type": "string"}},
                {"name": "user", "in": "query", "required": True, "schema": {"type": "string"}}],
                "responses": {**_ok(200), **_err(400, 403, 404, *AUTH_ERRORS)}},
        },
        "/api/v1/keys": {
            "get": {"summary": "The account's API keys (never their secrets); signed-in persons only", "responses": {**_ok(200), **_err(403, *AUTH_ERRORS)}},
            "post": {"summary": "A new API key {paths, ops: read|write|delete, label?, expires?: YYYY-MM-DD}; its token is in the answer, once",
                     "responses": {**_ok(201), **_err(400, 403, *AUTH_ERRORS)}},
        },
        "/api/v1/keys/{id}": {"delete": {"summary": "Remove an API key: it stops working at once",
                                         "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                                         "responses": {**_ok(200), **_err(403, 404, *AUTH_ERRORS)}}},
        "/api/v1/users": {
            "get": {"summary": "Administrators: every account with its files and volume", "responses": {**_ok(200), **_err(403, *AUTH_ERRORS)}},
            "post": {"summary": "Administrators: add an account {name, email, uid?, create_system_user?, valid_until?, password?}",
                     "responses": {**_ok(201), **_err(400, 403, 409, *AUTH_ERRORS)}},
        },
        "/api/v1/users/{name}": {
            "get": {"summary": "Administrators: one account", "parameters": [NAME], "responses": {**_ok(200), **_err(403, 404, *AUTH_ERRORS)}},
            "patch": {"summary": "Administrators: email, validity, quota, eviction size", "parameters": [NAME],
                      "responses": {**_ok(200), **_err(400, 403, 404, *AUTH_ERRORS)}},
        },
        "/api/v1/users/{name}/files": {"get": {"summary": "Administrators: an account's files (path, size, mtime), paged in walk order",
                                               "parameters": [NAME, {"$ref": "#/components/parameters/offset"}, {"$ref": "#/components/parameters/limit"}],
                                               "responses": {**_ok(200), **_err(400, 403, 404, *AUTH_ERRORS)}}},
        "/api/v1/users/{name}/{what}": {"post": {"summary": "Administrators: disable or enable an account (what: disable, enable)",
                                                 "parameters": [NAME, {"name": "what", "in": "path", "required": True, "schema": {"enum": ["disable", "enable"]}}],
                                                 "responses": {**_ok(200), **_err(403, 404, *AUTH_ERRORS)}}},
        "/api/v1/pools": {"get": {"summary": "Administrators: every pool, its state and space", "responses": {**_ok(200), **_err(403, *AUTH_ERRORS)}}},
        "/api/v1/pools/history": {"get": {"summary": "Administrators: pool usage samples and state changes, oldest first: ?pool=&since=UNIX&limit=", "responses": {**_ok(200), **_err(400, 403, 404, *AUTH_ERRORS)}}},
        "/api/v1/status": {"get": {"summary": "Administrators: the filesystem's status and alerts", "responses": {**_ok(200), **_err(403, *AUTH_ERRORS)}}},
        "/api/v1/locks": {"get": {"summary": "Administrators: files open for writing by one account", "responses": {**_ok(200), **_err(403, *AUTH_ERRORS)}}},
        "/api/v1/zip": {"get": {"summary": "Files and folders as one zip, made while it is sent: ?path=A&path=B[&name=basket.zip]",
                                "parameters": [{"name": "path", "in": "query", "required": True, "schema": {"type": "array", "items": {"type": "string"}}},
                                               {"name": "name", "in": "query", "schema": {"type": "string"}}],
                                "responses": {"200": {"description": "the zip", "content": {"application/zip": {}}}, **_err(400, 403, 404, *AUTH_ERRORS)}}},
        "/api/v1/downloads": {"post": {
            "summary": "A one-time link (60 s) to one file, or one zip of files and folders, for a browser to follow",
            "requestBody": {"content": {"application/json": {"schema": {"type": "object", "required": ["paths"], "properties": {
                "paths": {"type": "array", "items": {"type": "string"}}, "name": {"type": "string"}}}}}},
            "responses": {**_ok(201, text="{url, expires, zip}"), **_err(400, 403, 404, *AUTH_ERRORS)}}},
        "/api/v1/downloads/{secret}": {"get": {
            "summary": "Follow a download link (no Authorization: the link is the sign-in that made it, once)", "security": [],
            "parameters": [{"name": "secret", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "the file or the zip"}, **_err(403, 404, 503)}}},
        "/api/v1/accounts": {"get": {
            "summary": "Accounts to share with: names starting with q (at most 20)",
            "parameters": [{"name": "q", "in": "query", "schema": {"type": "string"}}],
            "responses": {**_ok(200, text="{accounts: [{name}]}"), **_err(*AUTH_ERRORS)}}},
        "/api/v1/setup": {
            "get": {"summary": "Whether the first administrator is still to be made", "security": [],
                    "responses": _ok(200, text="{needed, local, group}")},
            "post": {"summary": "Make the first administrator (only while none exists; from this host, or with the one-time token of the log)",
                     "security": [], "requestBody": {"content": {"application/json": {"schema": {"type": "object",
                         "required": ["name", "email", "password"], "properties": {"name": {"type": "string"}, "email": {"type": "string"},
                         "password": {"type": "string"}, "token": {"type": "string"}}}}}},
                     "responses": {**_ok(201, text="the account"), **_err(400, 403, 409, 503)}}},
        "/": {"get": {"summary": "The web interface (a client of this API)", "security": [], "responses": _ok(200, text="an HTML page")}},
        "/favicon.ico": {"get": {"summary": "The repfs logo", "security": [], "responses": _ok(200, text="an SVG image")}},
        "/ui/{path}": {"get": {"summary": "The web interface's script, style and vendored libraries", "security": [],
                               "parameters": [PATH], "responses": {**_ok(200), **_err(404)}}},
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
                                                    "quota": {"type": "object"}, "admin": {"type": "boolean"},
                                                    "password_temporary": {"type": "boolean"}}},
            "Password": {"type": "object", "required": ["old_password", "password"],
                         "properties": {"old_password": {"type": "string"}, "password": {"type": "string"}}},
            "Entry": {"type": "object", "properties": {
                "name": {"type": "string"}, "path": {"type": "string"},
                "kind": {"enum": ["file", "folder", "symlink", "other"]}, "size": {"type": "integer"},
                "mtime": {"type": "number"}, "mode": {"type": "string"}, "uid": {"type": "integer"},
                "gid": {"type": "integer"}, "target": {"type": ["string", "null"]}, "etag": {"type": "string"}}},
            "Listing": {"type": "object", "properties": {
                "path": {"type": "string"}, "total": {"type": "integer"}, "offset": {"type": "integer"},
                "writable": {"type": "boolean", "description": "whether the caller may add and remove entries here"},
                "entries": {"type": "array", "items": {"$ref": "#/components/schemas/Entry"}}}},
            "Move": {"type": "object", "required": ["from", "to"],
                     "properties": {"from": {"type": "string"}, "to": {"type": "string"}, "replace": {"type": "boolean"}}},
        },
    },
}  # fmt: skip
