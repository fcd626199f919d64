"""How a URI may appear in logs and error messages: without credentials, query or fragment.

Pre-signed URLs carry their signature in the query, and ``user:password@`` is a secret; every
process that logs or reports a producer's URI shows it through :func:`redact_uri`.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_uri(uri: str) -> str:
    """``uri`` without credentials, query or fragment."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "(unparsable URI)"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
