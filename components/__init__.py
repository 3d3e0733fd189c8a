"""Thin KFP wrappers, one per lifecycle step: artifacts in, step call, metadata out."""
