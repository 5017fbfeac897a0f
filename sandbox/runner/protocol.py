"""The wire constants, as in elm/sandbox/protocol.py (tests/test_sandbox_protocol.py checks)."""

PROTOCOL = 2  # these three as in elm/sandbox/protocol.py (tests/test_sandbox_protocol.py checks)
TOKEN_FIELD = "token"
RESULT_LIMIT_BYTES = 8 * 1024 * 1024
