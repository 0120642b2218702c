"""Load torch files a tenant can write (checkpoints, models) without running code from them.

``torch.load(weights_only=True)`` unpickles only tensors, numbers, strings and plain
containers: a pickle that names any other callable (a ``__reduce__`` payload) is refused
before anything is called. Everything this trainer saves is of that kind (checkpoint.py
stores the RNG states as plain data for this reason), so nothing needs ``weights_only=False``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import IO, Any

import torch

from laxai_trainer.errors import ConfigError


class UnsafeFileError(ConfigError):
    """A torch file that holds more than tensors and plain data, or is not a torch file."""


def _why(exc: Exception) -> str:
    # torch's message is a page long and advises weights_only=False; keep the line that says what.
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    said = [line for line in lines if "unsupported" in line.lower()]
    return (said or lines or [type(exc).__name__])[0].rstrip(".")


def load_tensors(source: str | Path | IO[bytes], name: str) -> Any:
    """The file's tensors and plain data; ``name`` (its storage URI) is what errors show."""
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeFileError(
            f"{name}: refused to load: it holds objects other than tensors and plain data "
            f"({_why(exc)}); it was not written by this trainer or was modified since"
        ) from None
    except (RuntimeError, EOFError, ValueError, KeyError) as exc:
        raise UnsafeFileError(f"{name}: not a readable torch file ({_why(exc)})") from None
