"""The UI shows an Untrusted agent (fleet filter, agent page with the reason) and whether an agent
verifies signatures at all: the real app and SQLite store, seeded by tests.ui.seed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from flask.testing import FlaskClient

from schemas.api import ApplyResult, StatusReport
from tests.ui.conftest import UiEnv, client_as, ui_env  # noqa: F401


def test_untrusted_agent_in_fleet_and_agent_page(
    ui_env: UiEnv,  # noqa: F811
    client_as: Callable[[str], FlaskClient],  # noqa: F811
) -> None:
    store = ui_env.store
    trusting, plain = ui_env.agent_ids[0], ui_env.agent_ids[1]
    view = store.get_agent(trusting)
    assert view.desired_hash is not None
    store.report_status(
        trusting,
        StatusReport(
            collector_state="running",
            effective_config_hash="0" * 64,  # still the previous config
            last_apply=ApplyResult(
                result="untrusted",
                config_hash=view.desired_hash,
                revision=view.desired_revision,
                error="signed by key 'ffffffffffffffff', which is not a trusted key",
                at=datetime.now(UTC),
            ),
            uptime_s=5,
            verifies_signatures=True,
        ),
    )
    store.report_status(
        plain,
        StatusReport(
            collector_state="running",
            uptime_s=5,
            verifies_signatures=False,
            collector_version="0.135.0-acme.2",
        ),
    )
    assert store.get_agent(trusting).sync_status == "Untrusted"

    client = client_as("viewer")
    fleet = client.get("/?sync=Untrusted").text
    assert trusting in fleet and plain not in fleet
    page = client.get(f"/agents/{trusting}").text
    assert "verified (--trust-key)" in page and "not a trusted key" in page and ">untrusted<" in page
    plain_page = client.get(f"/agents/{plain}").text
    assert "not verified" in plain_page and "0.135.0-acme.2" in plain_page
    assert "collector 0.135.0-acme.2" in client.get("/").text  # the fleet list, per agent
    events = store.agent_events(plain).items
    assert any(e.kind == "collector" and (e.detail or {}).get("to") == "0.135.0-acme.2" for e in events)
