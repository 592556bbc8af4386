"""Shared by every layer: the error hierarchy, shipped-data lookup, stop signals, redaction.

Nothing here imports any other part of runner_agent.
"""
