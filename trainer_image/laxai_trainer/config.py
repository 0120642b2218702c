"""The trainer's configuration: the seed API's training request, as pydantic models.

This module imports pydantic only (never torch), so the API shim and the operator
use the same models. They are the single source of the TrainingJob contract: the
CRD's ``spec`` schema is generated from them (``laxai-operator crd``).

Unknown keys are rejected everywhere (``extra="forbid"``): a typo in a
hyperparameter name must be an error that names the key, never silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from laxai_trainer.strict_numbers import reject_bool

#: A storage path segment that is also a valid Kubernetes label value
#: (≤ 63 chars, alphanumeric at both ends): tenants become labels and folders.
TENANT_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$"
#: A run name: safe as one path segment (no '/', no leading '.', no '..').
RUN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"

AttentionLayer = Literal["layer1", "layer2", "layer3", "layer4"]
TripletMining = Literal["batch_hard", "random"]
InputPipeline = Literal["device", "pil"]
TripletLoss = Literal["hard_margin", "soft_margin"]


class StrictModel(BaseModel):
    """Base for every contract model: unknown keys are errors, assignment is validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, bool):  # runs for every field of every model: keep the common case cheap
            return value
        return reject_bool(value, cls.model_fields[info.field_name].annotation)


class TrainingKwargs(StrictModel):
    """Training hyperparameters (the seed's ``training_kwargs``)."""

    num_epochs: int = Field(50, ge=1, le=10000, description="Number of training epochs.")
    batch_size: int = Field(
        64,
        ge=4,
        le=4096,
        description=(
            "Training batch size: P players x K crops (K = images_per_player), "
            "so it must be at least 2 x images_per_player."
        ),
    )
    learning_rate: float = Field(
        1e-3, gt=0, le=10, description="Learning rate of the Adam optimiser."
    )
    early_stopping_patience: int = Field(
        10,
        ge=1,
        le=10000,
        description="Stop after this many epochs without improvement of validation mAP.",
    )
    min_images_per_player: int = Field(
        2,
        ge=2,
        le=10000,
        description=(
            "Players with fewer crops than this are dropped, per split "
            "(at least 2: a triplet needs a positive pair)."
        ),
    )
    margin: float = Field(0.4, gt=0, le=10, description="Triplet loss margin.")
    weight_decay: float = Field(
        1e-4, ge=0, le=1, description="L2 regularisation weight decay of the optimiser."
    )
    margin_decay_rate: float = Field(
        0.99,
        gt=0,
        le=1,
        description="Per-epoch decay of the triplet margin: margin x rate^epoch (1 = no decay).",
    )
    margin_change_threshold: float = Field(
        0.01,
        ge=0,
        le=10,
        description="The decayed margin is applied only when it differs from the current one by more than this.",
    )
    lr_scheduler_patience: int = Field(
        3,
        ge=0,
        le=10000,
        description="ReduceLROnPlateau: epochs without improvement before the learning rate is reduced.",
    )
    lr_scheduler_factor: float = Field(
        0.5, gt=0, lt=1, description="ReduceLROnPlateau: factor the learning rate is multiplied by."
    )
    lr_scheduler_min_lr: float = Field(
        1e-7, ge=0, le=10, description="ReduceLROnPlateau: lower bound of the learning rate."
    )
    num_workers: int = Field(
        8,
        ge=0,
        le=64,
        description=(
            "Worker processes: input_pipeline device: processes decoding crops into the crop cache "
            "(0: in the trainer process); pil: DataLoader workers (0 loads in the main process)."
        ),
    )
    prefetch_factor: int = Field(
        2,
        ge=1,
        le=64,
        description=(
            "Batches staged in advance: input_pipeline device: batches copied to the GPU ahead of "
            "their step when the crops do not fit on it; pil: per DataLoader worker (num_workers > 0)."
        ),
    )
    force_pretraining: bool = Field(
        False,
        description=(
            "Start from ImageNet weights even when the tenant has a previously trained model "
            "(false: warm-start from the tenant's latest model when one exists)."
        ),
    )
    # Extensions beyond the seed's 15 parameters, with defaults that keep its behaviour.
    images_per_player: int = Field(
        4,
        ge=2,
        le=256,
        description="K in the P x K batch sampler: crops of each player in a batch.",
    )
    triplet_mining: TripletMining = Field(
        "batch_hard",
        description=(
            "batch_hard: each image embedded once per step, hardest positive and negative "
            "per anchor; random: anchor/positive/negative triplets as in the original LaxAI loop."
        ),
    )
    seed: int = Field(
        42, ge=0, le=2**31 - 1, description="Random seed for sampling, augmentation and init."
    )
    input_pipeline: InputPipeline = Field(
        "pil",
        description=(
            "pil: PIL decode + torchvision augmentations per crop in DataLoader workers; "
            "device: crops decoded once into a memory-mapped cache, batches augmented on the "
            "training device (equal to pil on val mAP within seed noise; the default stays pil "
            "until measured on a GPU)."
        ),
    )
    # Recipe options from the re-ID literature (docs/architecture.md: the measured choice).
    triplet_loss: TripletLoss = Field(
        "hard_margin",
        description=(
            "hard_margin: relu(d_pos - d_neg + margin); soft_margin: softplus(d_pos - d_neg + margin). "
            "margin, margin_decay_rate and margin_change_threshold act on both."
        ),
    )
    id_loss_weight: float = Field(
        0.0,
        ge=0,
        le=100,
        description=(
            "Weight of an identity-classification (cross-entropy) loss over the training players, "
            "added to the triplet loss (0: triplet loss only)."
        ),
    )
    label_smoothing: float = Field(
        0.1, ge=0, lt=1, description="Label smoothing of the identity loss (used when id_loss_weight > 0)."
    )
    warmup_epochs: int = Field(
        0,
        ge=0,
        le=10000,
        description=(
            "Linear learning-rate warm-up over this many epochs, per step, up to learning_rate "
            "(0: none); ReduceLROnPlateau starts counting after it."
        ),
    )

    @model_validator(mode="after")
    def _batch_holds_two_players(self) -> TrainingKwargs:
        if self.batch_size < 2 * self.images_per_player:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be at least 2 x images_per_player "
                f"({self.images_per_player}): a batch needs two players for negatives"
            )
        return self


class ModelKwargs(StrictModel):
    """Model architecture (the seed's ``model_kwargs``)."""

    embedding_dim: int = Field(
        512, ge=8, le=4096, description="Dimension of the L2-normalised output embedding."
    )
    dropout_rate: float = Field(
        0.2, ge=0, lt=1, description="Dropout rate before the embedding layer."
    )
    use_cbam: bool = Field(True, description="Insert CBAM attention modules after attention_layers.")
    bnneck: bool = Field(
        False,
        description=(
            "A BatchNorm after the embedding layer (BN-neck): the triplet loss sees the embedding "
            "before it, the identity loss and the output after it."
        ),
    )
    attention_layers: list[AttentionLayer] = Field(
        default_factory=lambda: ["layer2", "layer3", "layer4"],
        max_length=4,
        description="ResNet stages followed by a CBAM module (subset of layer1..layer4).",
        json_schema_extra={"uniqueItems": True},
    )

    @model_validator(mode="after")
    def _unique_layers(self) -> ModelKwargs:
        if len(set(self.attention_layers)) != len(self.attention_layers):
            raise ValueError("attention_layers must not repeat a layer")
        return self


WandbTag = Annotated[str, Field(min_length=1, max_length=64)]


class TrainingConfig(StrictModel):
    """One training request: what to train on and how (the seed's Training Request)."""

    tenant_id: str = Field(
        ...,
        pattern=TENANT_PATTERN,
        max_length=63,
        description=(
            "Tenant whose crops are used: {root}/{tenant_id}/datasets/. Letters, digits, "
            "'-', '_', '.', alphanumeric at both ends, at most 63 characters."
        ),
    )
    frames: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description=(
            "Number of frame datasets to train on (all when unset); the first N dataset ids "
            "in sorted order are used, so the choice is deterministic."
        ),
    )
    verbose: bool = Field(True, description="Debug-level logging in the trainer.")
    save_intermediate: bool = Field(
        False,
        description="Keep per-epoch metrics and the best checkpoint under the run folder.",
    )
    custom_name: str | None = Field(
        None,
        pattern=RUN_NAME_PATTERN,
        max_length=128,
        description=(
            "Run name: outputs go to {root}/{tenant_id}/runs/{custom_name}/ and it names the "
            "wandb run. Defaults to the job's task id."
        ),
    )
    resume_from_checkpoint: bool = Field(
        True,
        description=(
            "What a new job does with an earlier run of the same custom_name: continue from its "
            "checkpoint (true; refused when nothing is left to train), or archive it to "
            "runs/{custom_name}/archive/ and start over (false). A job's own retries always resume."
        ),
    )
    wandb_tags: list[WandbTag] = Field(
        default_factory=list, max_length=32, description="Tags of the wandb run."
    )
    training_kwargs: TrainingKwargs = Field(
        default_factory=TrainingKwargs, description="Training hyperparameters."
    )
    model_kwargs: ModelKwargs = Field(
        default_factory=ModelKwargs, description="Model architecture parameters."
    )

    def run_name(self, fallback: str) -> str:
        """The run folder name: custom_name, else the caller's fallback (task id)."""
        return self.custom_name or fallback


#: The fields of TrainingConfig, in the order the seed documents them.
CONFIG_FIELDS: tuple[str, ...] = tuple(TrainingConfig.model_fields)
