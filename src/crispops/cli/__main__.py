"""`python -m crispops.cli`: the same as the `crispops` command."""

from crispops.cli import main

main()
