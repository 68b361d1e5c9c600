"""One-time download links. A browser that follows a link sends no Authorization header, so
a page asks for a link with its sign-in (`POST /api/v1/downloads`) and points the browser at
it: the download is then the browser's own (streamed to disk, with its progress and its
place to save). A link works once, for a minute, and counts as the sign-in that made it:
that sign-in is checked again when the link is used, so a signed-out session's link fails.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

TTL = 60.0  # seconds a link is good for
MOST = 10_000  # links kept at once; the oldest go first


@dataclass(frozen=True)
class Link:
    proof: tuple[str, str]  # what the page signed in with: ("token", TOKEN) or ("cert", PEM)
    paths: tuple[str, ...]
    name: str  # the zip's file name
    zipped: bool  # one zip of paths, else the one file
    expires: float


class DownloadLinks:
    def __init__(self) -> None:
        self._links: OrderedDict[str, Link] = OrderedDict()

    def make(self, proof: tuple[str, str], paths: tuple[str, ...], name: str, *, zipped: bool) -> tuple[str, float]:
        """A new link's secret and its expiry (unix seconds)."""
        now = time.time()
        while self._links and (len(self._links) >= MOST or next(iter(self._links.values())).expires < now):
            self._links.popitem(last=False)
        secret = secrets.token_urlsafe(24)
        self._links[secret] = Link(proof, paths, name, zipped, now + TTL)
        return secret, now + TTL

    def take(self, secret: str) -> Link | None:
        """The link, used up; None when it is unknown, used or expired."""
        link = self._links.pop(secret, None)
        if link is None or link.expires < time.time():
            return None
        return link
