"""Helpers shared by tests: real servers on 127.0.0.1, Git repos in tmp dirs, the collector."""
