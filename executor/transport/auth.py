"""Where tokens come from, and when the daemon may listen without them.

Tokens map to identities (``Identity``): logs and run ownership name the identity, never the
token.  They are read once at start from a file (``--token-file``; one ``NAME TOKEN [admin]``
per line, ``#`` comments) and/or the environment (``CCX_TOKENS=name:token,other:token2``).
"""

from __future__ import annotations

from collections.abc import Mapping

# is_loopback: the daemon decides with it whether it may listen without tokens.
from cc_executor.executor.hosts import is_loopback as is_loopback
from cc_executor.executor.transport.frontdoor import Identity
from cc_executor.supervision.files import read_text

MIN_TOKEN_LENGTH = 16


class TokenError(ValueError):
    """A token source is malformed; the message says where."""


def _add(tokens: dict[str, Identity], name: str, token: str, admin: bool, where: str) -> None:
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokenError(f"{where}: the token of {name} is shorter than {MIN_TOKEN_LENGTH}")
    if token in tokens:
        raise TokenError(f"{where}: the token of {name} is also {tokens[token].name}'s")
    tokens[token] = Identity(name, admin=admin)


def parse_token_file(text: str, path: str) -> dict[str, Identity]:
    """``NAME TOKEN [admin]`` per line."""
    tokens: dict[str, Identity] = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) not in (2, 3) or (len(fields) == 3 and fields[2] != "admin"):
            raise TokenError(f"{path}:{number}: expected 'NAME TOKEN [admin]'")
        _add(tokens, fields[0], fields[1], len(fields) == 3, f"{path}:{number}")
    return tokens


def parse_token_env(value: str) -> dict[str, Identity]:
    """``name:token[,name:token...]`` (a ``:admin`` suffix grants admin)."""
    tokens: dict[str, Identity] = {}
    for item in filter(None, value.split(",")):
        name, _, rest = item.partition(":")
        token, _, flag = rest.partition(":")
        if not name or not token or flag not in ("", "admin"):
            raise TokenError("CCX_TOKENS: expected name:token[:admin],...")
        _add(tokens, name, token, flag == "admin", "CCX_TOKENS")
    return tokens


def load_tokens(env: Mapping[str, str], token_file: str | None) -> Mapping[str, Identity] | None:
    """Every configured token, or None when none is configured (no authentication)."""
    tokens: dict[str, Identity] = {}
    if token_file:
        try:
            text = read_text(token_file)  # a FIFO or device there is refused, never waited on
        except OSError as exc:
            raise TokenError(f"cannot read the token file {token_file}: {exc.strerror}") from None
        tokens.update(parse_token_file(text, token_file))
    if env.get("CCX_TOKENS"):
        for token, identity in parse_token_env(env["CCX_TOKENS"]).items():
            if token in tokens:
                raise TokenError(f"CCX_TOKENS: the token of {identity.name} is in the file too")
            tokens[token] = identity
    return tokens or None
