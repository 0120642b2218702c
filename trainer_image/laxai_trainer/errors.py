"""The trainer's exception hierarchy; the CLI maps it to exit codes (``laxai_trainer.exit_codes``).

- :class:`TrainerError` — base of the trainer's own errors.
- :class:`ConfigError` — bad configuration or input that no retry can fix → exit code 3
  (``CONFIG_ERROR``), message in the termination log.
- :class:`DataError` — the data the config points at is unusable (no datasets for the
  tenant, too few players in a split, …). A ``ConfigError``, so also exit code 3.

No torch here: the storage layer (imported by the API) raises these too.
"""

from __future__ import annotations


class TrainerError(Exception):
    """Base of the trainer's own errors."""


class ConfigError(TrainerError):
    """Configuration or input that no retry can fix (exit code 3)."""


class DataError(ConfigError):
    """The tenant's data is missing or unusable (exit code 3)."""
