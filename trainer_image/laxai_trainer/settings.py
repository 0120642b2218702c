"""Settings shared by every component, read from the environment (prefix ``LAXAI_``).

Each component extends :class:`CommonSettings` with its own fields, so one prefix
configures the whole system and each command's ``--help`` lists what it reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LAXAI_", extra="ignore")

    storage_root: str = Field(
        "./.laxai/storage",
        description="Where datasets and run outputs live: gs://BUCKET[/prefix] or a local folder.",
    )
    backend: Literal["local", "kubernetes"] = Field(
        "local", description="API backend: local (subprocesses, SQLite) or kubernetes (TrainingJob CRs)."
    )
    home: Path = Field(
        Path("./.laxai"), description="Local-mode data: job database, logs, data cache."
    )


def env_help(settings_cls: type[BaseSettings], unread: Iterable[str] = ()) -> str:
    """One line per setting the command reads (``unread``: inherited fields it ignores), for its
    --help epilog; a default is printed once, and not at all when there is none."""
    prefix = settings_cls.model_config.get("env_prefix", "")
    lines = ["environment:"]
    for name, field in settings_cls.model_fields.items():
        if name in unread:
            continue
        text = field.description or ""
        default = field.get_default(call_default_factory=True)
        if default not in (None, "", [], {}) and "(default:" not in text:
            text += f" (default: {default})"
        lines.append(f"  {prefix}{name.upper():<28} {text}")
    return "\n".join(lines)
