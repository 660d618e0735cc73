"""HMAC signature verification over the exact raw body. Pure: no Falcon, no I/O.

Asgardeo's hub sends `X-Hub-Signature: sha256=<hex>`; WSO2 IS 7.x sends `x-wso2-event-signature: sha256=<hex>`.
The hub re-serialises JSON before signing, so only the raw received bytes verify.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Iterable, Mapping

from engine.errors import SignatureError
from engine.secrets import Secret

SIGNATURE_HEADERS = ("x-hub-signature", "x-wso2-event-signature")
ALGORITHMS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
_VALUE = re.compile(r"^([A-Za-z0-9]+)=([0-9A-Fa-f]+)$")


def find_signature(headers: Mapping[str, str]) -> str:
    """The signature header's value (header names are case-insensitive); SignatureError when absent."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in SIGNATURE_HEADERS:
        if name in lowered:
            return lowered[name]
    raise SignatureError("missing signature: expected an X-Hub-Signature or x-wso2-event-signature header")


def parse_signature(value: str) -> tuple[str, bytes]:
    """`sha256=<hex>` -> ('sha256', digest bytes). Refuses sha1 and every unknown or malformed form."""
    match = _VALUE.match(value.strip())
    if not match:
        raise SignatureError("malformed signature: expected 'sha256=<hex digest>'")
    algorithm, hex_digest = match.group(1).lower(), match.group(2)
    if algorithm not in ALGORITHMS:
        raise SignatureError(f"unsupported signature algorithm {algorithm[:16]!r}: use sha256, sha384 or sha512")
    if len(hex_digest) != _HEX_LENGTH[algorithm]:
        raise SignatureError(f"malformed signature: a {algorithm} digest has {_HEX_LENGTH[algorithm]} hex digits")
    return algorithm, bytes.fromhex(hex_digest)


def sign(body: bytes, secret: str, algorithm: str = "sha256") -> str:
    """The header value a publisher would send for `body` (used by the simulator and tests)."""
    return f"{algorithm}=" + hmac.new(secret.encode("utf-8"), body, ALGORITHMS[algorithm]).hexdigest()


def verify(body: bytes, header_value: str, secrets: Iterable[Secret]) -> int:
    """Index of the secret that signed `body`; SignatureError when none did. Every secret is tried (rotation)
    with a constant-time comparison; the message never reveals a secret or the expected digest."""
    algorithm, given = parse_signature(header_value)
    matched = -1
    for index, secret in enumerate(secrets):
        expected = hmac.new(secret.reveal().encode("utf-8"), body, ALGORITHMS[algorithm]).digest()
        if hmac.compare_digest(expected, given) and matched < 0:
            matched = index
    if matched < 0:
        raise SignatureError("signature does not match: check that the webhook secret equals the one "
                             "set in the Asgardeo / WSO2 console")
    return matched
