"""Pydantic models shared by every part of ctrltower: repo files, API payloads, diagnostics.

This package depends on nothing else in the project; everything else depends on it.
"""
