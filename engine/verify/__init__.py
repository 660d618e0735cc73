"""Verify: HMAC signatures over the exact raw body, then the Security Event Token envelope. Pure, no I/O."""
