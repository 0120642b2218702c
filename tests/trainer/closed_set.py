"""A closed-set synthetic dataset: val holds other crops of the train players.

The synth default (val players distinct from train players) measures generalisation
to new identities, which a randomly initialised ResNet cannot learn in the few CPU
steps a test affords. Here each player's last crops move to val, so a few epochs
visibly lift val mAP above the untrained model's: the learning test.
"""

from pathlib import Path

from laxai_trainer.synth import generate

TENANT = "tenant1"
PLAYERS = 6
TRAIN_CROPS = 6
VAL_CROPS = 3


def make_closed_set(root: Path, seed: int = 0) -> Path:
    generate(root, TENANT, players=PLAYERS, frames=1, images_per_player=TRAIN_CROPS + VAL_CROPS,
             val_players=0, seed=seed)
    for dataset in sorted((root / TENANT / "datasets").iterdir()):
        for player in sorted((dataset / "train").iterdir()):
            val = dataset / "val" / player.name
            val.mkdir(parents=True)
            for crop in sorted(player.iterdir())[TRAIN_CROPS:]:
                crop.rename(val / crop.name)
    return root
