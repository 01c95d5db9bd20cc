"""The rollout controller: moves each active rollout through its steps, one server process at a time.

Every `tick_s` the controller takes (or renews) the `rollouts` lease in the store; only the holder
works, so several server processes (or replicas sharing a database) never drive a rollout twice, and
when the holder dies another takes over once the lease expires. Everything a rollout is lives in the
store, so a restart continues where it stopped: the next tick reads the state and goes on.

One tick, per progressing rollout: apply the `group` and `weight` steps in front of it (agents are
re-pinned in the same transaction); at an `analysis` step take a measurement every interval and keep
it; too many failed measurements -> `on_failure` (rollback: every agent of the rollout gets its
group's previous revision back and the commit is marked rolled back; pause); the step's duration over
-> next step if a measurement passed, else `on_inconclusive`; at a `pause` step wait for its duration
or pause until an operator promotes. After the last step the rollout succeeds.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping

from schemas.api import Measurement
from schemas.errors import CtrlTowerError
from schemas.repo import parse_duration
from webui.rollouts.analysis import AgentSample, measure
from webui.settings import ServerSettings
from webui.store import Store
from webui.store.errors import Conflict
from webui.store.rollouts import RolloutRow

log = logging.getLogger(__name__)

LEASE = "rollouts"
ACTOR, ROLE = "rollout-controller", "system"
# agent ids and a start time -> per agent {"dt": seconds, "<counter>": increase}; raises when unavailable
Sums = Callable[[list[str], float], Mapping[str, Mapping[str, float]]]


class RolloutController:
    def __init__(
        self,
        store: Store,
        sums: Sums | None,
        *,
        tick_s: float = 5.0,
        lease_s: float = 30.0,
        holder: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.sums = sums
        self.tick_s = tick_s
        self.lease_s = lease_s
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.clock = clock

    # --- the loop ------------------------------------------------------------------------------------

    def serve(self, stop: threading.Event) -> None:
        """Tick until `stop` is set, then hand the lease back (the next holder need not wait)."""
        while not stop.is_set():
            try:
                self.tick()
            except CtrlTowerError as exc:  # a busy database, the metrics process restarting: next tick
                log.warning("rollout tick failed (retrying): %s", exc)
            except Exception:  # a bug: log it with its traceback, keep the loop alive
                log.exception("rollout tick failed")
            stop.wait(self.tick_s)
        try:
            self.store.release_lease(LEASE, self.holder)
        except CtrlTowerError as exc:  # the next holder waits for the expiry instead
            log.warning("releasing the rollout lease failed: %s", exc)

    def tick(self) -> bool:
        """One pass over the active rollouts; False when another process holds the lease."""
        if not self.store.acquire_lease(LEASE, self.holder, self.lease_s):
            return False
        for rollout in self.store.active_rollouts():
            try:
                self._advance(rollout)
            except Conflict as exc:  # an operator moved it meanwhile: look again next tick
                log.info("rollout %s: %s", rollout.id, exc)
        return True

    # --- one rollout ---------------------------------------------------------------------------------

    def _advance(self, r: RolloutRow) -> None:
        if r.state != "progressing":
            return
        steps = r.policy.steps
        i, weight, whole, applied = r.step, r.weight, list(r.whole_groups), []
        while i < len(steps) and steps[i].action in ("group", "weight"):
            step = steps[i]
            if step.group is not None and step.group not in whole:
                whole.append(step.group)
            if step.weight is not None:
                weight = max(weight, step.weight)
            applied.append(step.describe())
            i += 1
        if applied:
            r = self._move(r, "step", step=i, weight=weight, whole_groups=tuple(whole), applied=applied)
        if i >= len(steps):
            self._move(r, "succeed", state="succeeded", reason="every step passed")
            return
        step = steps[i]
        now = self.clock()
        if step.pause is not None:
            wait = parse_duration(step.pause.duration) if step.pause.duration else None
            if wait is None:
                self._move(r, "pause", state="paused", reason=f"step {i + 1}: waiting for `rollout promote`")
            elif now - r.step_started_at >= wait:
                self._move(r, "step", step=i + 1, applied=[step.describe()])
            return
        assert step.analysis is not None
        self._analyse(r, i, now)

    def _analyse(self, r: RolloutRow, i: int, now: float) -> None:
        analysis = r.policy.analysis
        step = r.policy.steps[i]
        interval = parse_duration(analysis.interval) or 30.0
        duration = parse_duration(step.analysis.duration if step.analysis else "") or interval
        taken = self.store.step_measurements(r.id, i, r.step_started_at)
        last = taken[-1].at.timestamp() if taken else r.step_started_at
        if now - last >= interval:
            # everything since the step began (from the last apply on): the newest seconds may not be
            # in the metrics store yet (the scraper writes in batches), so a window of one interval
            # could be empty; a growing window still judges the new revision only
            taken.append(self._measure(r, i, since=r.step_started_at))
        failed = [m for m in taken if m.verdict == "fail"]
        if len(failed) > analysis.failure_limit:
            self._fail(
                r,
                f"step {i + 1} ({step.describe()}): {len(failed)} failed measurement(s); {_why(failed[-1])}",
            )
        elif now - r.step_started_at >= duration:
            if any(m.verdict == "pass" for m in taken):
                self._move(r, "step", step=i + 1, applied=[step.describe()])
            elif analysis.on_inconclusive == "fail":
                self._fail(r, f"step {i + 1} ({step.describe()}): no measurement passed (inconclusive)")
            else:
                reason = f"step {i + 1} ({step.describe()}): no measurement passed; resume or promote"
                self._move(r, "pause", state="paused", reason=reason)

    def _measure(self, r: RolloutRow, i: int, since: float) -> Measurement:
        rows = self.store.rollout_agents(r)
        agents = [
            AgentSample(
                id=str(a["id"]),
                group=str(a["group_name"]),
                on_new=a["served_sha"] == r.commit_sha,
                running=a["desired_hash"] is not None and a["reported_hash"] == a["desired_hash"],
                apply_failed=a["last_apply_result"] == "failed" and a["last_apply_hash"] == a["desired_hash"],
            )
            for a in rows
        ]
        new_ids = [a.id for a in agents if a.on_new]
        # Only time after the last new-revision agent applied it counts: before, it ran the old config
        # (and its collector was reloading). A window that shrinks to nothing is inconclusive.
        applied = [
            float(a["last_apply_at"]) for a in rows if a["served_sha"] == r.commit_sha and a["last_apply_at"]
        ]
        since = max([since, *applied])
        sums: Mapping[str, Mapping[str, float]] | None = None
        if self.sums is not None:
            try:
                sums = self.sums([a.id for a in agents], since)
            except CtrlTowerError as exc:
                log.warning("rollout %s: metrics unavailable: %s", r.id, exc)
        crashes = self.store.crashes_since(new_ids, since) if new_ids else 0
        interval = parse_duration(r.policy.analysis.interval) or 30.0
        verdict, checks = measure(
            r.policy.analysis,
            agents,
            sums,
            crashes,
            self.store.last_baseline(r.id),
            min_covered_s=min(interval / 2, 30.0),  # a collector updates its counters ~1/s
        )
        self.store.add_measurement(r.id, i, verdict, checks)
        return self.store.step_measurements(r.id, i, r.step_started_at)[-1]

    def _fail(self, r: RolloutRow, reason: str) -> None:
        if r.policy.on_failure == "rollback":
            self._move(r, "rollback", state="rolled_back", reason=reason)
        else:
            self._move(r, "pause", state="paused", reason=reason)

    def _move(
        self,
        r: RolloutRow,
        action: str,
        *,
        state: str | None = None,
        step: int | None = None,
        weight: int | None = None,
        whole_groups: tuple[str, ...] | None = None,
        reason: str | None = None,
        applied: list[str] | None = None,
    ) -> RolloutRow:
        moved = self.store.transition(
            r,
            actor=ACTOR,
            role=ROLE,
            action=action,
            state=state,
            step=step,
            weight=weight,
            whole_groups=whole_groups,
            reason=reason,
            detail={"applied": applied} if applied else None,
        )
        log.info(
            "rollout %s (%s): %s -> %s at step %s %s",
            r.id,
            r.policy.name,
            action,
            moved.state,
            moved.step,
            reason or "",
        )
        return moved


def _why(m: Measurement) -> str:
    """The failing checks of a measurement, in words: the evidence named in the rollout's reason."""
    parts = []
    for c in m.checks:
        if c.verdict == "fail" and c.value is not None:
            op = "<" if c.comparison == "min_ratio" else ">"
            parts.append(f"{c.metric} {c.value:.3g} {op} {c.threshold:g} ({c.detail})")
    return "; ".join(parts) or "a check failed"


def run(settings: ServerSettings) -> None:
    """The controller's process (started by webui/serve.py): its own store and metrics client, until
    SIGTERM."""
    from webui.metrics.client import MetricsClient

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    store = Store.from_settings(settings)
    client = MetricsClient(settings.metrics_socket, timeout_s=10.0) if settings.metrics else None
    try:
        RolloutController(
            store,
            None if client is None else client.sums,
            tick_s=settings.rollout_tick_s,
            lease_s=settings.rollout_lease_s,
        ).serve(stop)
    finally:
        if client is not None:
            client.close()
        store.close()
