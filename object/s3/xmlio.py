"""S3's XML in and out: answers built from nested tuples, request bodies parsed strictly.

Request bodies are small (a multi-delete or a bucket configuration), bounded in size and
refused outright when they declare a DTD, so no entity expansion can happen.
"""

from __future__ import annotations

from xml.etree import ElementTree
from xml.sax.saxutils import escape

from soko.object.s3.errors import S3Error

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_BODY = 2 * 1024 * 1024


def element(name: str, content) -> str:
    """``content``: a string, None (omitted), a bool, a number, or a list of (name, content).
    ``name`` may carry attributes after a space (``Grantee xsi:type="Group"``)."""
    if content is None:
        return ""
    if isinstance(content, bool):
        content = "true" if content else "false"
    tag = name.split(" ", 1)[0]
    if isinstance(content, list):
        return f"<{name}>{''.join(element(n, c) for n, c in content)}</{tag}>"
    return f"<{name}>{escape(str(content))}</{tag}>"


def document(name: str, content: list) -> bytes:
    inner = "".join(element(n, c) for n, c in content)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<{name} xmlns="{S3_NS}">{inner}'
            f"</{name}>").encode()


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse(body: bytes, root: str) -> ElementTree.Element:
    """The body's root element named ``root`` (any namespace), or ``MalformedXML``."""
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise S3Error("MalformedXML")
    try:
        tree = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        raise S3Error("MalformedXML") from None
    if local(tree.tag) != root:
        raise S3Error("MalformedXML")
    return tree


def children(node: ElementTree.Element, name: str) -> list[ElementTree.Element]:
    return [child for child in node if local(child.tag) == name]


def child_text(node: ElementTree.Element, name: str) -> str | None:
    found = children(node, name)
    return (found[0].text or "") if found else None
