"""Reading the trainer's config: a TrainingJob, its spec, or the seed request body.

Accepted documents (JSON or YAML; JSON is YAML):

- a TrainingJob (``apiVersion``/``kind``/``metadata``/``spec``) → its ``spec``;
- a TrainingJob ``spec`` → the training fields, run-only keys dropped;
- the seed's request body (``POST /api/v1/train``) → as is.

Run-only keys (how Kubernetes runs the pod: image, gpus, …) are dropped; every other
key is validated by :class:`~laxai_trainer.config.TrainingConfig`, so a misspelt
hyperparameter is an error that names it.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from laxai_trainer.config import TrainingConfig

#: TrainingJob spec keys that describe how to run the trainer, not what to train
#: (the wire names of ``laxai_operator.resource.RunSpec``; a test keeps them in sync).
RUN_ONLY_KEYS = frozenset(
    {
        "image",
        "gpus",
        "resources",
        "shmSize",
        "nodeSelector",
        "tolerations",
        "priorityClassName",
        "queueName",
        "backoffLimit",
        "activeDeadlineSeconds",
        "startupTimeoutSeconds",
        "ttlSecondsAfterFinished",
        "suspend",
        "cancel",
    }
)


class ConfigDocumentError(ValueError):
    """The config document is unreadable or invalid; the message names the field."""


def parse_document(text: str, source: str) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigDocumentError(f"{source}: not valid JSON or YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigDocumentError(f"{source}: expected a mapping (TrainingJob, spec or request), got {type(doc).__name__}")
    return doc


def training_fields(doc: dict[str, Any], source: str) -> dict[str, Any]:
    """The TrainingConfig part of a TrainingJob, spec or request."""
    if "spec" in doc and ("kind" in doc or "apiVersion" in doc):
        kind = doc.get("kind")
        if kind not in (None, "TrainingJob"):
            raise ConfigDocumentError(f"{source}: kind is {kind!r}, expected TrainingJob")
        doc = doc["spec"]
        if not isinstance(doc, dict):
            raise ConfigDocumentError(f"{source}: spec must be a mapping")
    return {k: v for k, v in doc.items() if k not in RUN_ONLY_KEYS}


def describe_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem, each naming the field by its dotted path."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(document)"
        lines.append(f"{loc}: {err['msg']}")
    return f"invalid training config in {source}:\n  " + "\n  ".join(lines)


def load_config(text: str, source: str = "config") -> TrainingConfig:
    """Parse and validate a config document; ConfigDocumentError names what is wrong."""
    fields = training_fields(parse_document(text, source), source)
    try:
        return TrainingConfig.model_validate(fields)
    except ValidationError as exc:
        raise ConfigDocumentError(describe_validation_error(exc, source)) from exc
