"""Credentials never reach a log line, an error message or the history.

Three forms carry them: a URL's user info (`https://user:token@host`, also when the password
holds spaces, newlines, '@', '/', '?', '#' or quotes, and when a path normalisation left one
slash: `https:/user:token@host`), scp-like git locations (`user:password@host:path`, also
quoted with spaces in the password) and query parameters that name a secret (`?token=...`).
Plain text such as `bob@example.com` or `git@github.com:org/repo` is left alone; when in doubt,
more is hidden rather than less.
"""

from __future__ import annotations

import re

#: Where a URL's user info may start: after `scheme:/`, `scheme://` (any number of slashes).
_AFTER_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/+")
_SPACE = re.compile(r"\s")
#: How far after the scheme user info is looked for, so the cost stays linear.
_WINDOW = 4096
#: `user:password@host...` where the password has no space and does not start with '/'.
_SCP = re.compile(r"(?<![\w.~+-])[\w.~+-]+:(?=[^\s@/])[^\s@]{0,4096}@")
#: The same inside a quoted value, where the password may hold spaces.
_SCP_QUOTED = re.compile(r"(?<=['\"])[\w.~+-]+:(?=[^\s@/])[^'\"@\n]{0,4096}@")
_SECRET_QUERY = re.compile(
    r"([?&;](?:access_token|private_token|token|password|passwd|pwd|secret|client_secret|"
    r"api_key|apikey|key|auth|sig|signature)=)[^&;\s'\"#]+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """Hide credentials (https://user:token@host -> https://***@host, u:pw@h:path -> ***@h:path,
    ?token=abc -> ?token=***)."""
    if "=" in text:
        text = _SECRET_QUERY.sub(r"\1***", text)
    if "@" not in text:
        return text
    text = _redact_user_info(text)
    return _SCP.sub("***@", _SCP_QUOTED.sub("***@", text))


def _redact_user_info(text: str) -> str:
    parts: list[str] = []
    done = 0
    for scheme in _AFTER_SCHEME.finditer(text):
        start = scheme.end()
        if start < done:
            continue  # inside user info already hidden
        window = text[start : start + _WINDOW]
        space = _SPACE.search(window)
        first_word_end = space.start() if space else len(window)
        at = window.rfind("@", 0, first_word_end)
        if at < 0 and space and ":" in window[:first_word_end] and first_word_end > 0:
            # a password with a space or newline ("https://u:pa ss@h") shows itself by the ':'
            # before its first space; "https://host is down, ask bob@corp" has none
            at = window.find("@", first_word_end)
        if at < 0:
            continue
        parts += [text[done:start], "***"]
        done = start + at
    return "".join(parts) + text[done:]
