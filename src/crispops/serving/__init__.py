"""The champion model as a BentoML service."""
