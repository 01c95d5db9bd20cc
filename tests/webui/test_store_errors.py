"""The store's errors map to HTTP in one place (webui/errors.py): every type has a status, codes survive."""

from __future__ import annotations

import pytest

from webui import errors
from webui.store import errors as store_errors


def test_every_store_error_type_has_an_http_status() -> None:
    kinds = [
        obj
        for obj in vars(store_errors).values()
        if isinstance(obj, type)
        and issubclass(obj, store_errors.StoreError)
        and obj is not store_errors.StoreError
    ]
    assert kinds and all(kind in errors.STORE_STATUS for kind in kinds), kinds


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (store_errors.NotFound("no agent 'x'", details={"agent_id": "x"}), 404, "not_found"),
        (store_errors.NotFound("no build", code="no_collector"), 404, "no_collector"),
        (store_errors.Conflict("stale", code="revision_conflict"), 409, "revision_conflict"),
        (store_errors.Invalid("group names must be unique"), 422, "validation_error"),
    ],
)
def test_a_store_error_answers_with_its_status_and_code(
    exc: store_errors.StoreError, status: int, code: str
) -> None:
    err = errors.as_api_error(exc)
    assert (err.status, err.code, err.message, err.details) == (status, code, exc.message, exc.details)
    assert err.__cause__ is exc


def test_a_subclass_takes_the_status_of_its_nearest_mapped_base() -> None:
    class RolloutMoved(store_errors.Conflict):
        code = "rollout_moved"

    err = errors.as_api_error(RolloutMoved("moved meanwhile"))
    assert (err.status, err.code) == (409, "rollout_moved")
