"""Which storage errors are worth retrying: the network, the object store or the catalog being
briefly unavailable or busy. Everything else (bad input, bugs) fails at once. An Iceberg commit
that lost to a concurrent writer (CommitFailedException, ValidationException) is not one of them:
`storage.commit_retry` has already retried it where the commit is made, and a step retry would
only multiply those attempts."""

from __future__ import annotations

_TRANSIENT_NAMES = frozenset(
    {
        "OperationalError",  # SQL catalog connection lost / database locked
        "InterfaceError",
        "EndpointConnectionError",
        "ConnectionClosedError",
        "ReadTimeoutError",
        "ConnectTimeoutError",
        "ServiceUnavailableError",
        "ServerError",
        "ConnectionError",
        "TimeoutError",
    }
)
_TRANSIENT_S3_CODES = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"}
)


# Errors of these classes that are about who is asking, not whether the server is there: a wrong
# password stays wrong, so retrying it only delays the failure.
_PERMANENT_HINTS = (
    "password authentication failed",
    "authentication failed",
    "does not exist",
    "permission denied",
)


def is_transient(exc: BaseException) -> bool:
    chain = _chain(exc)
    if any(hint in str(error) for error in chain for hint in _PERMANENT_HINTS):
        return False
    for error in chain:
        if type(error).__name__ in _TRANSIENT_NAMES:
            return True
        code = getattr(error, "response", {}) or {}
        if isinstance(code, dict) and code.get("Error", {}).get("Code") in _TRANSIENT_S3_CODES:
            return True
        # pyarrow surfaces S3 network failures as OSError with the AWS error text; DuckDB,
        # streaming a dataset through pyarrow, passes that text on in its own error.
        streamed = type(error).__module__ == "_duckdb" and "IOError" in str(error)
        if (type(error) is OSError or streamed) and any(
            hint in str(error) for hint in ("curlCode", "Connection refused", "NETWORK_CONNECTION")
        ):
            return True
    return False


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen
