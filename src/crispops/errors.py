"""Every error crispops raises on purpose derives from :class:`CrispopsError`.

Each one carries a message a user can act on: what is wrong and where (the file,
the setting, the column, the object). The CLI catches the base and prints the
message; anything else is an internal error.

The second base of each class keeps the built-in kind it had (``ValueError`` for
bad input, ``RuntimeError`` for a failed operation), so ``except ValueError`` in a
caller still works.
"""

from __future__ import annotations

from typing import Any


class CrispopsError(Exception):
    """The base of every error crispops raises for a user to read."""


class UserError(CrispopsError, ValueError):
    """A command-line argument or a request the user can fix."""


class SettingsError(CrispopsError, ValueError):
    """Settings that cannot be used; the message names the key and where it came from."""


class DataFileError(CrispopsError, ValueError):
    """A data file that cannot be used; the message names the file and the problem."""


class ContractError(CrispopsError, LookupError):
    """The feature contract cannot be read from the Feast registry."""


class FeatureStoreError(CrispopsError, RuntimeError):
    """A Feast repo or store operation that cannot run (no repo, never materialized...)."""


class DataValidationError(CrispopsError, ValueError):
    """The training set broke a blocking validation rule; ``report`` has every finding."""

    def __init__(self, report: Any) -> None:
        self.report = report
        super().__init__("data validation failed: " + report.summary())


class ChampionError(CrispopsError, ValueError):
    """The champion pointer cannot be read; the message names the file and the problem."""


class ScaffoldError(CrispopsError, ValueError):
    """A target directory or option `crispops init` cannot use; the message says why."""


class SubmitError(CrispopsError, RuntimeError):
    """Submission to Kubeflow Pipelines failed; the message is one line a user can act on."""


class ContainerError(CrispopsError, RuntimeError):
    """A container engine is missing or a build failed; the message says what to do."""


class DeployError(CrispopsError, RuntimeError):
    """A deployment step failed; the message says what and where."""
