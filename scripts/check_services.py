"""Check that the services the test suite needs answer: PostgreSQL (DATABASE_URL) and Redis (REDIS_URL).

`make test` runs this first so a missing service is one clear sentence instead of a wall of
tracebacks. Exits 0 when both answer, 1 otherwise (naming each service that did not).
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit, urlunsplit

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/allowance"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
TIMEOUT = 3  # seconds, for connecting and for each answer

POSTGRES_SCHEMES = {"postgres", "postgresql", "psql", "pgsql", "postgis"}

POSTGRES_HOWTO = (
    "  Start it, for example:\n"
    '    pg_ctlcluster "$(ls /etc/postgresql | sort -V | tail -n1)" main start\n'
    "    docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:17\n"
    "  or run .ci/run (starts PostgreSQL and Redis, then the tests), or set DATABASE_URL."
)
REDIS_HOWTO = (
    "  Start it, for example:\n"
    "    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no\n"
    "    docker run -d -p 6379:6379 redis:7\n"
    "  or run .ci/run (starts PostgreSQL and Redis, then the tests), or set REDIS_URL."
)


def redact(url: str) -> str:
    """The URL with its password replaced, fit to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


# Failures that mean "nothing answered there": the service is down or the address is wrong.
UNREACHABLE = (
    ("connection refused", "connection refused"),
    ("timeout", f"no answer within {TIMEOUT} s"),
    ("timed out", f"no answer within {TIMEOUT} s"),
    ("name or service not known", "unknown host"),
    ("nodename nor servname", "unknown host"),
    ("temporary failure in name resolution", "unknown host"),
    ("no route to host", "no route to host"),
    ("network is unreachable", "network is unreachable"),
    ("no such file or directory", "no such socket"),
)


def reason(exc: BaseException) -> tuple[str, bool]:
    """A short, human reason for a failed connection, and whether it means "not reachable"."""
    text = str(exc).strip()
    lowered = text.lower()
    for needle, short in UNREACHABLE:
        if needle in lowered:
            return short, True
    # libpq: 'connection to server at "…", port 5432 failed: FATAL:  role "x" does not exist'
    if "FATAL:" in text:
        text = text.rpartition("FATAL:")[2]
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return (first or type(exc).__name__), False


def problem(service: str, url: str, exc: BaseException, variable: str, howto: str) -> str:
    why, unreachable = reason(exc)
    if unreachable:
        return f"{service} is not reachable at {redact(url)} ({why}). Start it, or set {variable}.\n{howto}"
    return (
        f"{service} at {redact(url)} answered but refused the connection ({why}). "
        f"Fix {variable} or the server's access settings."
    )


def check_postgres(url: str) -> str | None:
    """None if PostgreSQL answers at `url`, else the problem. Connects to the `postgres`
    maintenance database: the test database itself is created later by pytest-django."""
    parts = urlsplit(url)
    if parts.scheme not in POSTGRES_SCHEMES:
        print(f"DATABASE_URL is not PostgreSQL ({parts.scheme}://); skipping the PostgreSQL check.")
        return None
    import psycopg

    maintenance = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    try:
        with psycopg.connect(maintenance, connect_timeout=TIMEOUT) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return problem("PostgreSQL", url, exc, "DATABASE_URL", POSTGRES_HOWTO)
    return None


def check_redis(url: str) -> str | None:
    """None if Redis answers PING at `url`, else the problem."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return problem("Redis", url, exc, "REDIS_URL", REDIS_HOWTO)
    return None


def main() -> int:
    database_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    problems = [p for p in (check_postgres(database_url), check_redis(redis_url)) if p]
    if problems:
        print("The test suite needs PostgreSQL and Redis.\n", file=sys.stderr)
        for problem in problems:
            print(problem + "\n", file=sys.stderr)
        return 1
    print(f"Services OK: PostgreSQL at {redact(database_url)}, Redis at {redact(redis_url)}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
