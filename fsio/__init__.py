"""File-system writes every part shares: the one way ctrltower replaces a file (`fsio.atomic`).

A package of its own because both the agent (which may import only `schemas`) and the server and CLI
(which may not import the agent) replace files, and `schemas` is pure (no I/O, by test). It imports only
the standard library; tests/test_layers.py keeps it that way.
"""
