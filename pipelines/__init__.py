"""Pipelines: composition only."""
