"""The summary body of a many-object operation (an SLO manifest PUT with heartbeat, a
manifest delete; bulk later), in the format the client accepts, as Swift writes it."""

from __future__ import annotations

import json
import re
from xml.sax.saxutils import escape

FORMATS = ("text/plain", "application/json", "application/xml", "text/xml")


def accepted_format(environ: dict) -> str:
    """The first of ``FORMATS`` the Accept header names with a non-zero q (else plain)."""
    offered = []
    for item in environ.get("HTTP_ACCEPT", "").split(","):
        media, *params = (part.strip() for part in item.split(";"))
        weights = [p.partition("=")[2] for p in params if p.replace(" ", "").startswith("q=")]
        try:
            weight = float(weights[0]) if weights else 1.0
        except ValueError:
            continue
        if media.lower() in FORMATS and weight > 0:
            offered.append((-weight, FORMATS.index(media.lower()), media.lower()))
    return min(offered)[2] if offered else "text/plain"


def matching_format(environ: dict) -> str | None:
    """The format swob's ``best_match`` picks for bulk answers: the client's types by
    quality (exact before wildcards), the first of ``FORMATS`` one matches; plain without an
    Accept header; None (406) when none matches or the header is malformed."""
    header = environ.get("HTTP_ACCEPT", "")
    if not header:
        return FORMATS[0]
    patterns = []
    for item in header.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        kind, slash, sub = media.partition("/")
        if not slash or not kind or not sub:
            return None
        weights = [p.partition("=")[2].strip() for p in params if p.partition("=")[0] == "q"]
        try:
            weight = float(weights[0]) if weights else 1.0
        except ValueError:
            return None
        pattern = "/".join("[^/]+" if part == "*" else re.escape(part) for part in (kind, sub))
        patterns.append((weight, "*" not in media, pattern))
    patterns.sort(key=lambda p: (p[0], p[1]), reverse=True)
    for _, _, pattern in patterns:
        for fmt in FORMATS:
            if re.fullmatch(pattern, fmt):
                return fmt
    return None


def report_body(fmt: str, fields: dict, errors: list[list[str]], root: str) -> bytes:
    """``fields`` then the ``[name, status]`` errors: JSON, XML or ``Key: value`` lines."""
    if fmt == "application/json":
        return json.dumps({**fields, "Errors": errors}).encode()
    if fmt.endswith("/xml"):
        out = [f"<{root}>\n"]
        for key in sorted(fields):
            tag = key.replace(" ", "_").lower()
            out.append(f"<{tag}>{escape(str(fields[key]))}</{tag}>\n")
        out.append("<errors>\n")
        out += [f"<object><name>{escape(name)}</name><status>{escape(status)}</status>"
                "</object>\n" for name, status in errors]
        out.append(f"</errors>\n</{root}>\n")
        return "".join(out).encode()
    lines = [f"{key}: {fields[key]}\n" for key in sorted(fields)]
    lines.append("Errors:\n")
    lines += [f"{name}, {status}\n" for name, status in errors]
    return "".join(lines).encode()
