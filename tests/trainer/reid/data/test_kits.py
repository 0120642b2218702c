"""laxai_trainer.reid.data.kits: kit id per image, the held-out check of val players."""


def test_kit_per_image_reads_kits_json_per_dataset(tmp_path):
    import json

    from laxai_trainer.reid.data.kits import kit_per_image
    from laxai_trainer.reid.data.loaders import scan_split

    for frame, kits in (("f0", {"a": "home", "b": "away", "c": "home"}), ("f1", {"a": "home"})):
        for player in ("a", "b", "c"):
            folder = tmp_path / frame / "val" / player
            folder.mkdir(parents=True)
            for k in range(2):
                (folder / f"{k}.jpg").write_bytes(b"x")
        (tmp_path / frame / "kits.json").write_text(json.dumps(kits))
    dirs = [tmp_path / "f0", tmp_path / "f1"]
    index = scan_split(dirs, "val", 2, "t")
    per_image = kit_per_image(index, dirs).tolist()
    # f0: a home(0) b away(1) c home(0); f1: a home — another team than f0's home; b, c unknown
    assert per_image == [0, 0, 1, 1, 0, 0, 2, 2, -1, -1, -1, -1]
    (tmp_path / "f0" / "kits.json").unlink()
    (tmp_path / "f1" / "kits.json").write_text("not json")
    assert kit_per_image(index, dirs) is None  # real data without kit info: no same-kit metrics


def test_a_val_player_also_in_training_is_warned_about(tmp_path, caplog):
    from laxai_trainer.reid.data.kits import warn_shared_players
    from laxai_trainer.reid.data.loaders import scan_split

    for split, players in (("train", ("p1", "p2", "p3")), ("val", ("p3", "p4"))):
        for player in players:
            folder = tmp_path / "f0" / split / player
            folder.mkdir(parents=True)
            for k in range(2):
                (folder / f"{k}.jpg").write_bytes(b"x")
    (tmp_path / "f1" / "val" / "p1").mkdir(parents=True)  # same name, another frame: another player
    for k in range(2):
        (tmp_path / "f1" / "val" / "p1" / f"{k}.jpg").write_bytes(b"x")
    dirs = [tmp_path / "f0", tmp_path / "f1"]
    train, val = scan_split(dirs, "train", 2, "t"), scan_split(dirs, "val", 2, "t")
    with caplog.at_level("WARNING", logger="laxai_trainer.reid.data.kits"):
        assert warn_shared_players(train, val) == [("f0", "p3")]
    assert "f0/p3" in caplog.text and "f1/p1" not in caplog.text
