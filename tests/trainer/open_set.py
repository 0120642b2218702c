"""The learning data of the job tests: an open-set synthetic dataset.

Val players are identities the model never trains on (synth's default), as in real
re-ID evaluation. It is the random-kits mode: these tests check that the loop learns
within five CPU epochs of 6 players, and on match-mode data (teammates in one kit) that
scale shows no lift (measured: val mAP 0.33 -> 0.34); bench/model_quality measures it. Sized for CPU: 6 train players x 6 crops (3 P x K steps per epoch
at batch 12, K 2) and 8 val players x 4 crops, one frame. With these seeds five
epochs lift val mAP from ~0.35 (random init) to ~0.65-0.7 (data seeds 0 and 1
measured); the 8 val players keep the untrained baseline low and less noisy.
"""

from pathlib import Path

from laxai_trainer.reid.data.synth import generate

TENANT = "tenant1"
PLAYERS = 6
TRAIN_CROPS = 6
VAL_PLAYERS = 8
VAL_CROPS = 4


def make_open_set(root: Path, seed: int = 0) -> Path:
    generate(root, TENANT, players=PLAYERS, frames=1, images_per_player=TRAIN_CROPS,
             val_players=VAL_PLAYERS, val_images_per_player=VAL_CROPS, seed=seed, mode="random-kits")
    return root
