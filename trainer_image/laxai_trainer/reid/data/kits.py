"""Kit info of a split (the same-kit metrics) and the held-out check of its val players.

- ``kits.json`` per dataset folder: {player_id: kit id} (written by ``laxai-train synth``
  in match mode; optional). :func:`kit_per_image` turns it into a kit id per image.
- :func:`shared_players` finds val players whose folder also exists in the same frame's
  train split (the same player: val would not be held out); the pipeline logs a warning.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

#: Per dataset folder: {player_id: kit id}.
KITS_FILE = "kits.json"
#: Kit id of an image whose player has no kit info.
NO_KIT = -1

log = logging.getLogger(__name__)


def read_kits(dataset_dir: str | os.PathLike) -> dict[str, str]:
    """{player_id: kit id} of one dataset folder; {} without (or with an unreadable) kits.json."""
    path = Path(dataset_dir) / KITS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("%s is not readable JSON (%s): same-kit metrics skip this dataset", path, exc)
        return {}
    if not isinstance(data, dict):
        log.warning("%s is not a {player_id: kit} object: same-kit metrics skip this dataset", path)
        return {}
    return {str(k): str(v) for k, v in data.items()}


def kit_per_image(index: Any, dataset_dirs: Sequence[str | os.PathLike]) -> torch.Tensor | None:
    """A kit id per image of a split index (``laxai_trainer.reid.data.loaders.SplitIndex``), or None.

    A kit is (dataset, kit id): kit "home" of two frames is two teams. NO_KIT for players
    the kits.json files do not name; None when no player of the split has kit info.
    """
    by_dataset = {Path(d).name: read_kits(d) for d in dataset_dirs}
    ids: dict[tuple[str, str], int] = {}
    per_player = []
    for dataset_id, player_id in index.players:
        kit = by_dataset.get(dataset_id, {}).get(player_id)
        per_player.append(NO_KIT if kit is None else ids.setdefault((dataset_id, kit), len(ids)))
    if not ids:
        return None
    table = torch.tensor(per_player, dtype=torch.long)
    return table[torch.tensor([s.label for s in index.samples], dtype=torch.long)]


def shared_players(train_index: Any, val_index: Any) -> list[tuple[str, str]]:
    """Val players (dataset_id, player_id) whose folder also exists in that frame's train split."""
    return sorted(set(train_index.players) & set(val_index.players))


def warn_shared_players(train_index: Any, val_index: Any) -> list[tuple[str, str]]:
    """Log a warning naming val players that are also training players; returns them."""
    shared = shared_players(train_index, val_index)
    if shared:
        names = ", ".join(f"{d}/{p}" for d, p in shared[:10]) + (" ..." if len(shared) > 10 else "")
        log.warning(
            "%d val player(s) also appear in training (same folder name in the same frame): %s; "
            "val metrics then overstate how the model does on unseen players",
            len(shared), names,
        )
    return shared
