"""VICReg pretraining checkpoints: resume matches an uninterrupted run, foreign files and changed
settings are refused, a finished run is returned as it was."""

from __future__ import annotations

import pytest
import torch
from _helpers_nets import assert_same, weights
from _helpers_pretrain import FAST, ToyViews, encoder, prior

from sbi_symmetry.symmetry.pretrain import pretrain_vicreg


# --------------------------------------------------------------------------------- checkpoints
def test_checkpoint_resume_matches_an_uninterrupted_run(tmp_path):
    settings = dict(
        num_simulations=200, batch_size=32, max_epochs=4, warmup_epochs=1, show_progress_bar=False
    )
    full = pretrain_vicreg(encoder(), ToyViews(), prior(), **settings)

    path = tmp_path / "run.pt"

    def interrupt(epoch, history):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain_vicreg(
            encoder(), ToyViews(), prior(), checkpoint_path=path, callback=interrupt, **settings
        )
    saved = torch.load(path, weights_only=True)
    assert saved["epochs_done"] == 2 and len(saved["history"]["val_total"]) == 2
    assert {"optimizer", "scheduler", "rng", "expander", "embedding"} <= saved.keys()
    assert saved["config"]["fresh_views"] is False  # "auto" recorded as what ran: one bank

    torch.manual_seed(123)  # resuming must not depend on the caller's RNG state
    resumed = pretrain_vicreg(  # naming what "auto" resolved to is the same setting
        encoder(seed=9),
        ToyViews(),
        prior(),
        checkpoint_path=path,
        resume=True,
        fresh_views=False,
        **settings,
    )
    assert_same(weights(full), weights(resumed))
    for key in full.history:
        if key != "epoch_time_s":
            assert full.history[key] == resumed.history[key], key


def test_checkpoint_refuses_foreign_file_and_changed_settings(tmp_path):
    path = tmp_path / "ckpt.pt"
    path.write_text("not mine")
    enc = encoder()
    before = weights(enc)
    with pytest.raises(FileExistsError, match="resume=True"):
        pretrain_vicreg(enc, ToyViews(), prior(), num_simulations=200, checkpoint_path=path, **FAST)
    assert path.read_text() == "not mine"
    assert_same(before, weights(enc))
    pretrain_vicreg(
        enc,
        ToyViews(),
        prior(),
        num_simulations=200,
        checkpoint_path=path,
        overwrite_checkpoint=True,
        **FAST,
    )
    assert torch.load(path, weights_only=True)["epochs_done"] == 2
    with pytest.raises(ValueError, match="learning_rate"):
        pretrain_vicreg(
            encoder(),
            ToyViews(),
            prior(),
            num_simulations=200,
            checkpoint_path=path,
            resume=True,
            learning_rate=0.5,
            **FAST,
        )
    with pytest.raises(ValueError, match="training data differ"):
        pretrain_vicreg(
            encoder(),
            ToyViews(),
            prior(),
            num_simulations=240,
            checkpoint_path=path,
            resume=True,
            **FAST,
        )


def test_resume_of_a_finished_run_returns_its_result(tmp_path):
    path = tmp_path / "done.pt"
    first = pretrain_vicreg(
        encoder(), ToyViews(), prior(), num_simulations=200, checkpoint_path=path, **FAST
    )
    again = pretrain_vicreg(
        encoder(seed=5),
        ToyViews(),
        prior(),
        num_simulations=200,
        checkpoint_path=path,
        resume=True,
        **FAST,
    )
    assert_same(weights(first), weights(again))
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left
