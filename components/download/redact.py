"""Hides the secrets an image URL may carry before it is written or logged.

A competition JSON may hold URLs with user info (``http://user:pw@host/a.jpg``) or signed
URLs (``...?X-Goog-Signature=...``, ``...?X-Amz-Security-Token=...``). The full URL is only
ever used to fetch; the status files, the TFRecords' url feature, the logs and the error
lines get the redacted form, where a secret's value is replaced by ``redacted``. The output
folder is shared with whoever trains on it, so a credential there would leak further.
"""

import re
from urllib.parse import unquote, urlsplit, urlunsplit

REDACTED = "redacted"
# Query parameters whose value is a credential or a signature: exact names (lower case)...
SECRET_PARAMS = frozenset(
    {
        "sig",
        "signature",
        "token",
        "access_token",
        "id_token",
        "refresh_token",
        "key",
        "api_key",
        "apikey",
        "password",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
        "auth",
        "authorization",
        "session",
        "sessionid",
        "x-goog-signature",
        "x-goog-credential",
        "x-goog-security-token",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "awsaccesskeyid",
        "googleaccessid",
        "policy",
    }
)
# ...and any name containing one of these: new spellings of the same thing (X-Foo-Signature).
_SECRET_PARTS = ("signature", "token", "credential", "secret", "password", "apikey", "api_key", "api-key")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()\[\]{}]+")
_USERINFO = re.compile(r"(://)[^/?#@\s]*@")


def is_secret_param(name: str) -> bool:
    """Whether a query parameter's value is a credential or signature (its name, any case)."""
    name = unquote(name).strip().lower()
    return name in SECRET_PARAMS or any(part in name for part in _SECRET_PARTS)


def _redact_query(query: str) -> str:
    parts = []
    for item in query.split("&"):
        name, sep, _ = item.partition("=")
        parts.append(f"{name}={REDACTED}" if sep and is_secret_param(name) else item)
    return "&".join(parts)


def redact_url(url: str) -> str:
    """The URL with its user info and secret query values replaced by ``redacted``.

    Everything else (scheme, host, port, path, other parameters, their encoding) is kept, so a
    redacted URL still says which image it was. A URL that cannot be parsed still loses any user info.

    Examples:
      ``http://user:pw@host/a.jpg`` -> ``http://redacted@host/a.jpg``;
      ``https://h/a.jpg?X-Goog-Signature=ab12&w=1`` -> ``https://h/a.jpg?X-Goog-Signature=redacted&w=1``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return _USERINFO.sub(rf"\1{REDACTED}@", url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = _redact_query(parts.query) if parts.query else parts.query
    # A fragment is not sent to the server but may carry an OAuth token (#access_token=...).
    fragment = _redact_query(parts.fragment) if "=" in parts.fragment else parts.fragment
    if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return url  # untouched: keep its exact spelling
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (for reasons and messages that quote a URL)."""

    def one(match: "re.Match[str]") -> str:
        # Punctuation that ends a sentence ends the URL too ("... at http://h/a?sig=1; HTTP 500").
        url = match.group(0)
        kept = url.rstrip(".,;:!?")
        return redact_url(kept) + url[len(kept) :]

    return _URL_IN_TEXT.sub(one, text) if "://" in text else text
