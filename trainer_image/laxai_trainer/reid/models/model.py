"""The re-identification network: ResNet18 + CBAM → L2-normalised embedding.

The backbone is torchvision's ResNet18 with conv1 replaced by a 3×3 stride-1 conv
(player crops are only 120×80, a 7×7 stride-2 stem throws away too much of them).
A CBAM module (channel attention, then spatial attention) follows each stage named
in ``attention_layers``; stages without one get an ``nn.Identity`` so the forward
pass is one straight line that TorchScript can compile. The head is
Dropout(``dropout_rate``) + Linear(512 → ``embedding_dim``), optionally a BN-neck
(``bnneck``), and the output is L2-normalised, so Euclidean distance and cosine similarity rank the same way.

Where the initial weights come from is decided by :func:`choose_init` in
``laxai_trainer.reid.models.init_weights``; this module only builds the network and loads
ImageNet weights into it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from laxai_trainer.config import ModelKwargs
from laxai_trainer.reid.data.loaders import INPUT_SIZE
from laxai_trainer.safe_load import load_tensors

__all__ = ["CBAM", "INPUT_SIZE", "ReIDNet", "build_model"]

log = logging.getLogger(__name__)
STAGES = ("layer1", "layer2", "layer3", "layer4")
STAGE_CHANNELS = {"layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512}
BACKBONE_FEATURES = 512


class ChannelAttention(nn.Module):
    """CBAM channel attention: a shared MLP over average- and max-pooled features."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(F.adaptive_avg_pool2d(x, 1))
        mx = self.mlp(F.adaptive_max_pool2d(x, 1))
        return torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: a 7×7 conv over channel-wise mean and max maps."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean(dim=1, keepdim=True)
        mx = x.amax(dim=1, keepdim=True)
        return torch.sigmoid(self.conv(torch.cat([avg, mx], dim=1)))


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al., 2018): channel, then spatial."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel(x)
        return x * self.spatial(x)


class ReIDNet(nn.Module):
    """ResNet18 (3×3 stride-1 stem) with optional CBAM after chosen stages."""

    def __init__(
        self,
        embedding_dim: int = 512,
        dropout_rate: float = 0.2,
        use_cbam: bool = True,
        attention_layers: tuple[str, ...] | list[str] = ("layer2", "layer3", "layer4"),
        bnneck: bool = False,
    ) -> None:
        super().__init__()
        unknown = set(attention_layers) - set(STAGES)
        if unknown:
            raise ValueError(f"attention_layers: unknown stage(s) {sorted(unknown)}; use {STAGES}")
        base = resnet18(weights=None)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = base.bn1
        self.relu = base.relu
        self.maxpool = base.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = base.layer1, base.layer2, base.layer3, base.layer4
        placed = set(attention_layers) if use_cbam else set()
        # One attribute per stage keeps state_dict keys stable ("cbam3.channel...").
        self.cbam1 = CBAM(64) if "layer1" in placed else nn.Identity()
        self.cbam2 = CBAM(128) if "layer2" in placed else nn.Identity()
        self.cbam3 = CBAM(256) if "layer3" in placed else nn.Identity()
        self.cbam4 = CBAM(512) if "layer4" in placed else nn.Identity()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout_rate)
        self.embedding = nn.Linear(BACKBONE_FEATURES, embedding_dim)
        # BN-neck (Luo et al., 2019): the triplet loss sees the embedding before a BatchNorm,
        # the identity classifier and inference after it.
        self.neck = nn.BatchNorm1d(embedding_dim) if bnneck else nn.Identity()
        if bnneck:
            self.neck.bias.requires_grad_(False)  # as in the paper: no shift before the classifier
        self.embedding_dim = embedding_dim

    def cbam_stages(self) -> list[str]:
        """The stages followed by a CBAM module, in order."""
        return [s for s, m in zip(STAGES, self._attention_modules(), strict=True) if isinstance(m, CBAM)]

    def _attention_modules(self) -> list[nn.Module]:
        return [self.cbam1, self.cbam2, self.cbam3, self.cbam4]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.cbam1(self.layer1(x))
        x = self.cbam2(self.layer2(x))
        x = self.cbam3(self.layer3(x))
        x = self.cbam4(self.layer4(x))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb = self.neck(self.embedding(self.dropout(self.features(x))))
        # Normalise in float32: bf16 autocast would otherwise quantise the unit vectors.
        return F.normalize(emb.float(), p=2.0, dim=1)

    @torch.jit.unused
    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(L2-normalised embedding for the triplet loss, features for the identity classifier).

        Without a BN-neck both come from the same embedding (the classifier sees it
        unnormalised); with one, the triplet side is before the neck, the classifier after.
        """
        emb = self.embedding(self.dropout(self.features(x)))
        return F.normalize(emb.float(), p=2.0, dim=1), self.neck(emb).float()


def build_model(kwargs: ModelKwargs) -> ReIDNet:
    """The network described by ``model_kwargs``, randomly initialised."""
    return ReIDNet(
        embedding_dim=kwargs.embedding_dim,
        dropout_rate=kwargs.dropout_rate,
        use_cbam=kwargs.use_cbam,
        attention_layers=list(kwargs.attention_layers),
        bnneck=kwargs.bnneck,
    )


def architecture(kwargs: ModelKwargs) -> dict:
    """What must match for a saved state_dict to load into a new model (dropout does not)."""
    arch = {
        "backbone": "resnet18-stem3x3",
        "embedding_dim": kwargs.embedding_dim,
        "cbam": sorted(kwargs.attention_layers) if kwargs.use_cbam else [],
    }
    if kwargs.bnneck:  # only when on: models saved before the option still match
        arch["bnneck"] = True
    return arch


# ---- ImageNet weights -------------------------------------------------------------------

IMAGENET_WEIGHTS = ResNet18_Weights.IMAGENET1K_V1


def imagenet_cache_path() -> Path:
    """Where torchvision keeps the ResNet18 ImageNet weights ($TORCH_HOME/hub/checkpoints)."""
    filename = IMAGENET_WEIGHTS.url.rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def load_imagenet_state(allow_download: bool) -> dict[str, torch.Tensor] | None:
    """ResNet18 ImageNet weights from torchvision's cache, else downloaded when allowed.

    None when neither works (the caller decides whether that is an error).
    """
    path = imagenet_cache_path()
    if path.is_file():
        return load_tensors(path, str(path))
    if not allow_download:
        return None
    try:
        return IMAGENET_WEIGHTS.get_state_dict(progress=False)
    except Exception as exc:  # network down, proxy, disk: all mean "not available"
        log.warning("ImageNet weights could not be downloaded from %s: %s", IMAGENET_WEIGHTS.url, exc)
        return None


def apply_imagenet(model: ReIDNet, state: dict[str, torch.Tensor]) -> list[str]:
    """Copy ImageNet weights into the backbone; returns the keys left at random init.

    conv1 (7×7 there, 3×3 here), CBAM and the embedding head have no ImageNet
    counterpart and keep their random initialisation.
    """
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    return sorted(k for k in own if k not in usable)
