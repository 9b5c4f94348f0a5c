"""Helpers for tests of HTML views: parse a page's text and images (html.parser), decode a data URI's image."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser


class Page(HTMLParser):
    """The text (whitespace-collapsed) and the image sources of an HTML fragment."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.images: list[str] = []
        self.feed(html)
        self.text = " ".join(" ".join(self.parts).split())

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"])


def decoded(uri: str):
    """A data URI's kind and its image, opened (and fully decoded) with Pillow."""
    from PIL import Image

    kind, _, payload = uri.partition(";base64,")
    image = Image.open(io.BytesIO(base64.b64decode(payload)))
    image.load()
    return kind, image
