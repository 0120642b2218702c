"""Shared cases for the contract tests: one table checked against the pydantic models
and against the generated CRD schema, so the two can never drift apart."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED_REQUEST = json.loads((ROOT / "examples" / "seed_request.json").read_text())

#: The seed's documented full request (SEED_API.md "Request Schema"), every field set.
FULL_REQUEST = {
    "tenant_id": "tenant1",
    "frames": 20,
    "verbose": True,
    "save_intermediate": True,
    "custom_name": "train_all_run",
    "resume_from_checkpoint": True,
    "wandb_tags": ["tag1", "tag2"],
    "training_kwargs": {
        "num_epochs": 50,
        "batch_size": 64,
        "learning_rate": 0.001,
        "early_stopping_patience": 10,
        "min_images_per_player": 2,
        "margin": 0.4,
        "weight_decay": 0.0001,
        "margin_decay_rate": 0.99,
        "margin_change_threshold": 0.01,
        "lr_scheduler_patience": 3,
        "lr_scheduler_factor": 0.5,
        "lr_scheduler_min_lr": 0.0000001,
        "num_workers": 8,
        "prefetch_factor": 2,
        "force_pretraining": False,
    },
    "model_kwargs": {
        "embedding_dim": 512,
        "dropout_rate": 0.2,
        "use_cbam": True,
        "attention_layers": ["layer1", "layer2"],
    },
}

#: (dotted path, bad value): each must be rejected with an error naming the last key.
BAD_VALUES = [
    ("tenant_id", ""),
    ("tenant_id", "../etc"),
    ("tenant_id", "a/b"),
    ("tenant_id", "-leading-dash"),
    ("tenant_id", "x" * 64),
    ("frames", 0),
    ("frames", "many"),
    ("custom_name", ".."),
    ("custom_name", "run/one"),
    ("custom_name", ".hidden"),
    ("verbose", "loud"),
    ("wandb_tags", "not-a-list"),
    ("wandb_tags", [""]),
    # A boolean is never a number (pydantic's lax mode read true as 1; the CRD rejects it too).
    ("training_kwargs.num_epochs", True),
    ("training_kwargs.learning_rate", False),
    ("model_kwargs.embedding_dim", True),
    ("frames", True),
    ("training_kwargs.num_epochs", 0),
    ("training_kwargs.num_epochs", -5),
    ("training_kwargs.batch_size", 0),
    ("training_kwargs.batch_size", 2),
    ("training_kwargs.learning_rate", 0),
    ("training_kwargs.learning_rate", -0.1),
    ("training_kwargs.early_stopping_patience", 0),
    ("training_kwargs.min_images_per_player", 1),
    ("training_kwargs.margin", 0),
    ("training_kwargs.weight_decay", -1e-4),
    ("training_kwargs.margin_decay_rate", 0),
    ("training_kwargs.margin_decay_rate", 1.5),
    ("training_kwargs.margin_change_threshold", -0.01),
    ("training_kwargs.lr_scheduler_patience", -1),
    ("training_kwargs.lr_scheduler_factor", 1.0),
    ("training_kwargs.lr_scheduler_factor", 0),
    ("training_kwargs.lr_scheduler_min_lr", -1),
    ("training_kwargs.num_workers", -1),
    ("training_kwargs.num_workers", 65),
    ("training_kwargs.prefetch_factor", 0),
    ("training_kwargs.force_pretraining", "yes please"),
    ("training_kwargs.images_per_player", 1),
    ("training_kwargs.triplet_mining", "semi_hard"),
    ("training_kwargs.input_pipeline", "gpu"),
    ("training_kwargs.triplet_loss", "lifted"),
    ("training_kwargs.id_loss_weight", -0.5),
    ("training_kwargs.label_smoothing", 1.0),
    ("training_kwargs.warmup_epochs", -1),
    ("model_kwargs.bnneck", "maybe"),
    ("model_kwargs.embedding_dim", 0),
    ("model_kwargs.dropout_rate", 1.0),
    ("model_kwargs.dropout_rate", -0.1),
    ("model_kwargs.use_cbam", "maybe"),
    ("model_kwargs.attention_layers", ["layer5"]),
    ("model_kwargs.attention_layers", "layer1"),
]

#: Misspelt keys at each level: must be rejected naming the key.
UNKNOWN_KEYS = [
    ("", "tenant"),
    ("", "training_params_typo"),
    ("training_kwargs", "learning_rat"),
    ("training_kwargs", "epochs"),
    ("model_kwargs", "embed_dim"),
]


def with_value(base: dict, dotted: str, value) -> dict:
    """A deep copy of base with the dotted path set to value."""
    data = json.loads(json.dumps(base))
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return data


def with_unknown(base: dict, parent: str, key: str) -> dict:
    data = json.loads(json.dumps(base))
    node = data
    for part in filter(None, parent.split(".")):
        node = node.setdefault(part, {})
    node[key] = 1
    return data
