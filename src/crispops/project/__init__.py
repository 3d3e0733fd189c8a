"""Project setup: `crispops init` (scaffold and its templates) and the demo data."""
