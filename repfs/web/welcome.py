"""The page and the call behind a welcome mail's one-time link (`repfs.fs.welcome`): the
link is `/welcome#TOKEN` (the token stays in the browser: a fragment is never sent, so no
log or Referer holds it); the page asks for the new password twice and posts it with the
token to `POST /api/v1/password/link`, which the daemon redeems once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from repfs.web.bodies import json_body, text
from repfs.web.control import Control

HEADERS = {"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'", "Cache-Control": "no-store",
           "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}  # fmt: skip

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>repfs: set your password</title>
<style>body{font:16px system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem;color:#1d2430}
h1{font-size:1.4rem}label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.5rem;box-sizing:border-box}
button{margin-top:1rem;padding:.5rem 1.2rem}#said{margin-top:1rem}</style></head>
<body><h1>repfs: set your password</h1>
<form id="set"><label for="p1">New password (at least 8 characters)</label>
<input id="p1" type="password" autocomplete="new-password" required minlength="8">
<label for="p2">The same again</label><input id="p2" type="password" autocomplete="new-password" required>
<button type="submit">Set password</button></form><p id="said" role="status"></p>
<script src="/welcome.js"></script></body></html>
"""

SCRIPT = """"use strict";
const said = document.getElementById("said");
document.getElementById("set").addEventListener("submit", async (event) => {
  event.preventDefault();
  const p1 = document.getElementById("p1").value, p2 = document.getElementById("p2").value;
  if (p1 !== p2) { said.textContent = "The two passwords differ."; return; }
  const token = location.hash.slice(1);
  const res = await fetch("/api/v1/password/link", {method: "POST", headers: {"Content-Type": "application/json"},
                                                    body: JSON.stringify({token: token, password: p1})});
  const body = await res.json();
  said.textContent = res.ok ? `Your password is set, ${body.name}: sign in with it.` : body.message;
  if (res.ok) { document.getElementById("set").hidden = true; history.replaceState(null, "", "/welcome"); }
});
"""


class WelcomeApi:
    def __init__(self, control: Control) -> None:
        self.control = control

    async def get_page(self, request: Request) -> Response:
        return Response(PAGE, media_type="text/html; charset=utf-8", headers=HEADERS)

    async def get_script(self, request: Request) -> Response:
        return Response(SCRIPT, media_type="text/javascript; charset=utf-8", headers=HEADERS)

    async def post_link(self, request: Request) -> Response:
        body = await json_body(request, {"token", "password"}, {"token", "password"})
        account = await self.control.redeem_welcome(text(body, "token", longest=200),
                                                    text(body, "password", longest=1024))  # fmt: skip
        return JSONResponse({"name": account["name"], "password_set": True})

    def routes(self, r: Callable[..., Any]) -> list[Route]:
        return [
            Route("/welcome", r(self.get_page, auth=False), methods=["GET"]),
            Route("/welcome.js", r(self.get_script, auth=False), methods=["GET"]),
            Route("/api/v1/password/link", r(self.post_link, auth=False), methods=["POST"]),
        ]
