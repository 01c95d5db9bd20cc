"""An OpAMP agent_description as ctrltower's agent record: hostname, platform, versions, labels (pure).

Every scalar attribute (identifying and non-identifying; identifying wins on a clash) whose key is a
valid label key becomes a label, so groups select OpAMP agents by `service.name`, `host.name`,
`deployment.environment` or any attribute the agent is started with. docs/opamp.md lists the mapping.
"""

from __future__ import annotations

import re

from schemas.api import AgentRegistration
from schemas.opamp import attributes, opamp_pb2

MAX_LABELS = 64
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]*$")  # schemas.common.LabelKey
AGENT_VERSION_ATTR = "ctrltower.agent.version"  # set by `ctrltower agent --protocol opamp`
METRICS_URL_ATTR = "ctrltower.metrics_url"


def description_attributes(description: opamp_pb2.AgentDescription) -> dict[str, str]:
    found = dict(attributes(description.non_identifying_attributes))
    found.update(attributes(description.identifying_attributes))
    return found


def labels_of(attrs: dict[str, str]) -> dict[str, str]:
    """The attributes that are valid labels (key pattern and lengths), at most MAX_LABELS, by key."""
    good = {
        k: v
        for k, v in sorted(attrs.items())
        if len(k) <= 63 and _LABEL_KEY.match(k) and len(v) <= 253 and k != METRICS_URL_ATTR
    }
    return dict(list(good.items())[:MAX_LABELS])


def registration_of(instance_id: str, description: opamp_pb2.AgentDescription | None) -> AgentRegistration:
    """The AgentRegistration for this instance (pydantic's ValidationError if a value cannot fit)."""
    attrs = description_attributes(description) if description is not None else {}
    hostname = attrs.get("host.name") or attrs.get("service.instance.id") or instance_id
    os_type, arch = attrs.get("os.type", ""), attrs.get("host.arch", "")
    platform = f"{os_type}/{arch}" if os_type and arch else os_type or arch
    metrics_url = attrs.get(METRICS_URL_ATTR)
    return AgentRegistration(
        instance_id=instance_id,
        hostname=hostname[:253],
        platform=platform[:128],
        agent_version=attrs.get(AGENT_VERSION_ATTR, "")[:64],
        collector_version=attrs.get("service.version", "")[:128] or None,
        labels=labels_of(attrs),
        metrics_url=metrics_url if metrics_url and len(metrics_url) <= 2048 else None,
    )
