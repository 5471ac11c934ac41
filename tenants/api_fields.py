"""Field types every app's API shares."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime
from pydantic_core import PydanticCustomError


def _within_utc_years(value: datetime) -> datetime:
    # "9999-12-31T23:59:59-14:00" parses, but it is in the year 10000 in UTC, where Python's
    # datetime (and the database) cannot hold it: refused here, not a 500 further down.
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError(
            "datetime_out_of_range", "Input should be a moment between the years 1 and 9999 in UTC"
        ) from None
    return value


# An ISO 8601 moment with its zone (a naive one is refused), within what UTC can hold.
Moment = Annotated[AwareDatetime, AfterValidator(_within_utc_years)]
