"""Operator tokens: ``Authorization: Bearer <token>`` → operator id, compared in constant time.

>>> auth = OperatorAuth({"s3cret-token": "alice"})
>>> auth.operator("Bearer s3cret-token"), auth.operator("Bearer wrong"), auth.operator(None)
('alice', None, None)
>>> OperatorAuth({}).enabled
False
"""
from __future__ import annotations

import hmac
from typing import Mapping


class OperatorAuth:
    """Checks bearer tokens against every configured token without an early exit.

    ``hmac.compare_digest`` takes the same time whatever prefix matches, and every token
    is compared on each request so the time does not tell which token came close.
    """

    def __init__(self, tokens: Mapping[str, str]):
        self._tokens = [(token.encode(), operator) for token, operator in tokens.items()]

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def operator(self, authorization: str | None) -> str | None:
        """The operator id for an ``Authorization`` header value, or None."""
        if not authorization:
            return None
        scheme, _, presented = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return None
        candidate = presented.strip().encode()
        found = None
        for token, operator in self._tokens:
            if hmac.compare_digest(candidate, token) and found is None:
                found = operator
        return found
