"""The shapes of an event's fields, each defined once.

`LifecycleEvent` (events.py) is built from these types, and so is the generic trigger's
body (generic.py): whatever the gateway accepts, the worker can use. A value that breaks
one of these rules is refused at the door (generic: 400; a code host: 200 `unusable`), never
left for the worker to trip over. Messages name the rule, never quote the value: they are
shown to the sender and logged.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

# `owner/repo`, or a GitLab path with subgroups: two or more segments of these characters
# (Bitbucket Data Center's personal projects are `~USER/repo`).
_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")
_SHA = re.compile(r"[0-9a-fA-F]{7,64}")
# Whitespace and control characters are never part of a git branch name.
_NOT_IN_BRANCH = re.compile(r"[\s\x00-\x1f\x7f]")

# docker/distribution's reference grammar (reference/regexp.go).
_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
# An image repository: `[registry[:port]/]path`, path in lower case, without tag or digest.
IMAGE_REPOSITORY = re.compile(rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
# A full image reference: a repository with an optional `:tag` and `@algorithm:hex` digest.
IMAGE_REFERENCE = re.compile(rf"{IMAGE_REPOSITORY.pattern}(?::{_TAG})?(?:@{_DIGEST})?")

# Times outside these bounds are a sender's mistake (or an attack on date arithmetic:
# year 1 or 9999 with an offset overflows). Later than 9000 leaves room for any arithmetic.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)

# Longer ids are refused rather than stored: they are keys in Redis.
MAX_DELIVERY_ID = 200
# The largest integer JSON carries exactly; change numbers are far below it.
MAX_CHANGE_NUMBER = 2**53 - 1


def repository_path(value: str) -> str:
    segments = value.split("/")
    # A segment of dots only ("." or "..") is a path trick, never a namespace or project.
    if len(segments) < 2 or not all(
        _SEGMENT.fullmatch(segment) and segment.strip(".") for segment in segments
    ):
        raise PydanticCustomError(
            "repository_path",
            "must look like owner/repo (or group/subgroup/repo): two or more segments of "
            "letters, digits, '.', '_', '~' or '-', without spaces or a leading or trailing '/'",
        )
    return value


def commit_sha(value: str) -> str:
    # Abbreviated hashes are accepted: Bitbucket Cloud sends 12 characters, some CIs have the short one.
    if not _SHA.fullmatch(value):
        raise PydanticCustomError("commit_sha", "must be a commit hash of 7 to 64 hexadecimal characters")
    # Git prints hashes in lowercase; comparing with what the worker stored must not depend on case.
    return value.lower()


def branch_name(value: str) -> str:
    if not value:
        raise PydanticCustomError("branch_empty", "must name a branch")
    if _NOT_IN_BRANCH.search(value):
        raise PydanticCustomError("branch_chars", "must not contain whitespace or control characters")
    return value


def image_reference(value: str) -> str:
    if not IMAGE_REFERENCE.fullmatch(value):
        raise PydanticCustomError(
            "image_reference",
            "must be an image reference such as registry.example.com/org/app:tag "
            "(path in lower case, no whitespace)",
        )
    return value


def event_time(value: datetime) -> datetime:
    """As UTC (a time without an offset is taken as UTC, as every adapter does), within bounds."""
    try:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise _out_of_range() from None
    if not EARLIEST <= value < LATEST:
        raise _out_of_range()
    return value


def _out_of_range() -> PydanticCustomError:
    return PydanticCustomError(
        "time_range", f"must be a time from {EARLIEST:%Y-%m-%d} to before {LATEST:%Y-%m-%d} (UTC)"
    )


def delivery_id(value: str) -> str:
    if not value.isprintable():
        raise PydanticCustomError("delivery_id", "must be printable")
    return value


Repository = Annotated[str, Field(max_length=512), AfterValidator(repository_path)]
CommitSha = Annotated[str, AfterValidator(commit_sha)]
BranchName = Annotated[str, Field(max_length=255), AfterValidator(branch_name)]
ImageReference = Annotated[str, Field(min_length=1, max_length=512), AfterValidator(image_reference)]
EventTime = Annotated[datetime, AfterValidator(event_time)]
ChangeNumber = Annotated[int, Field(ge=1, le=MAX_CHANGE_NUMBER)]
DeliveryId = Annotated[str, Field(min_length=1, max_length=MAX_DELIVERY_ID), AfterValidator(delivery_id)]
