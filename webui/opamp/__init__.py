"""The OpAMP server: `protocol` (pure decisions), `identity` (agent_description -> agent record),
`endpoint` (the `POST /v1/opamp` blueprint). The per-agent state is in webui/store/opamp.py."""
