"""A hot write's API key from this process's memory, confirmed by the write's own statement.

Every API request starts by reading its key (`tenants.services.api_key_authenticate`): a round trip
that, on the hot writes (a consumption, a ticket's question, a session start), costs a tenth of the
request. An
endpoint whose auth is `ApiKeyAuth(remembered=True)` may take the key instead from what this process
read less than `API_KEY_LAST_USED_RESOLUTION` seconds ago (so its last use is still recorded to the
minute), with the tenant's and the catalog's cache versions read then (`tenants.cache`). Such a key
is *unconfirmed*, and the request confirms it before it does anything with the database and before
it answers, whichever comes first:

- by its write's own statement: a durable procedure (`tenants.durable_call`) checks first, in the
  write's own transaction, that the key still belongs to the tenant, is not revoked and that both
  cache versions are still the ones the request used; if not, it writes nothing;
- by any other statement: the key's read runs just before it (this module's execute wrapper);
- by an answer that touched no database (a 422 on the body): the key's read before it is sent.

Whatever confirms it, a key that turns out revoked, or versions that moved, raise `KeyStale` before
anything was done, and the request runs again from the start with a fresh read of its key
(`tenants.api_run`): a revoked key gets its 401, a new plan its new answer. So a revoked key never
writes, reads or hears anything once its revocation has committed: stricter than a request that
reads its key and then writes, between which the key can be revoked.

PostgreSQL only (the procedures), and only outside a transaction: inside one (the test cases that
run in one) the key is read as on every other endpoint."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any

from django.db import connection

if TYPE_CHECKING:
    from tenants.models import ApiKey


class KeyStale(Exception):
    """The request's remembered key is revoked or no longer the tenant's, or the cache versions it
    came with have moved: nothing was done; the request runs again with a fresh read of its key."""


class _State(Enum):
    PENDING = "pending"  # nothing has confirmed the key yet
    VOUCHING = "vouching"  # the statement running now confirms it itself (a durable procedure)
    READING = "reading"  # the key's read is running
    CONFIRMED = "confirmed"


class KeyConfirmation:
    """The confirmation of one request's remembered key: the connection's execute wrapper while the
    request runs (`connection.execute_wrapper(confirmation)`)."""

    def __init__(self, key: ApiKey, secret: str, read: Callable[[str], ApiKey | None]) -> None:
        self.key = key
        self._secret = secret
        self._read = read  # the key's read (tenants.services.api_key_authenticate)
        self._state = _State.PENDING

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        if self._state is _State.PENDING:
            self.confirm_by_read()
        return execute(sql, params, many, context)

    def confirm_by_read(self) -> None:
        """Read the key afresh: the same key, not revoked, with the same cache versions, or
        `KeyStale`."""
        self._state = _State.READING
        fresh = self._read(self._secret)
        if fresh is None or fresh.pk != self.key.pk or fresh.versions != self.key.versions:
            raise KeyStale
        self._state = _State.CONFIRMED

    def vouch(self) -> tuple[int, int, int]:
        """What the next statement checks of the key itself: its id and the two versions. Until
        that statement has answered (`vouched`), the key is not confirmed."""
        assert self._state is _State.PENDING
        assert self.key.versions is not None
        self._state = _State.VOUCHING
        return self.key.pk, self.key.versions.tenant, self.key.versions.catalog

    def vouched(self, current: bool) -> None:
        """The vouching statement's answer: the key was current (and the write was made), or not
        (nothing was written: `KeyStale`)."""
        if not current:
            raise KeyStale
        self._state = _State.CONFIRMED

    def before_answer(self) -> None:
        """Confirm by a read the key that nothing confirmed on the way (an answer made without the
        database, or a vouching statement that failed)."""
        if self._state is not _State.CONFIRMED:
            self.confirm_by_read()


def pending() -> KeyConfirmation | None:
    """The running request's confirmation, while its key is still unconfirmed (the durable
    procedure about to run can vouch for it)."""
    for wrapper in connection.execute_wrappers:
        if isinstance(wrapper, KeyConfirmation) and wrapper._state is _State.PENDING:
            return wrapper
    return None
