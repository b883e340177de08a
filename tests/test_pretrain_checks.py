"""VICReg pretraining: bad input fails with a clear error before any training."""

from __future__ import annotations

import pytest
import torch
from _helpers_nets import assert_same, weights
from _helpers_pretrain import FAST, LENGTH, ToyViews, encoder, prior
from torch import nn

from sbi_symmetry.symmetry.pretrain import pretrain_vicreg
from sbi_symmetry.views import AugmentedViews, CircularShift

SMALL = dict(batch_size=32, show_progress_bar=False)


# --------------------------------------------------------------------------------- bad input
class WrongShapeViews(ToyViews):
    def __call__(self, theta):
        a, b = super().__call__(theta)
        return a, b[:, :-1]


class NaNViews(ToyViews):
    def __call__(self, theta):
        a, b = super().__call__(theta)
        a[0, 0] = float("nan")
        return a, b


class MetaViews(ToyViews):
    def __call__(self, theta):
        a, b = super().__call__(theta)
        return a.to("meta"), b.to("meta")


class FlatEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(LENGTH, 1)

    def forward(self, x):
        return self.lin(x).squeeze(-1)  # (B,), not (B, D)


@pytest.mark.parametrize(
    ("make_call", "error", "match"),
    [
        (
            lambda e: pretrain_vicreg(e, ToyViews(), prior(), num_simulations=200, batch_size=2),
            ValueError,
            "batch_size",
        ),
        (
            lambda e: pretrain_vicreg(e, WrongShapeViews(), prior(), num_simulations=200, **SMALL),
            ValueError,
            "same shape",
        ),
        (
            lambda e: pretrain_vicreg(e, NaNViews(), prior(), num_simulations=200, **SMALL),
            ValueError,
            "NaN",
        ),
        (
            lambda e: pretrain_vicreg(e, AugmentedViews(CircularShift()), prior(), **SMALL),
            ValueError,
            "`x` is required",
        ),
        (
            lambda e: pretrain_vicreg(e, ToyViews(), None, **SMALL),
            ValueError,
            "`prior` is required",
        ),
        (
            lambda e: pretrain_vicreg(e, ToyViews(), prior(), x=torch.zeros(10, LENGTH), **SMALL),
            ValueError,
            "input_kind='theta'",
        ),
        (
            lambda e: pretrain_vicreg(
                e,
                AugmentedViews(CircularShift()),
                x=torch.full((200, LENGTH), float("nan")),
                **SMALL,
            ),
            ValueError,
            "NaN",
        ),
        (
            lambda e: pretrain_vicreg(e, ToyViews(), prior(), num_simulations=40),
            ValueError,
            "more simulations",
        ),
        (
            lambda e: pretrain_vicreg(
                e, ToyViews(), prior(), num_simulations=200, validation_fraction=0.01, **SMALL
            ),
            ValueError,
            "validation",
        ),
        (
            lambda e: pretrain_vicreg(
                e, ToyViews(), prior(), num_simulations=200, max_epochs=3, warmup_epochs=3, **SMALL
            ),
            ValueError,
            "warmup_epochs",
        ),
        (
            lambda e: pretrain_vicreg(
                e, ToyViews(), prior(), num_simulations=200, epochs=3, **SMALL
            ),
            TypeError,
            "Unknown pretraining option",
        ),
        (
            lambda e: pretrain_vicreg(e, lambda t: (t, t), prior(), **SMALL),
            TypeError,
            "Views object",
        ),
        (
            lambda e: pretrain_vicreg(
                e,
                AugmentedViews(CircularShift()),
                x=torch.zeros(200, LENGTH, device="meta"),
                **SMALL,
            ),
            ValueError,
            "is on meta",
        ),
        (
            lambda e: pretrain_vicreg(
                e, ToyViews(), prior(), num_simulations=200, expander=nn.Linear(7, 4), **SMALL
            ),
            ValueError,
            "expander",
        ),
    ],
)
def test_bad_input_fails_before_any_training(make_call, error, match):
    enc = encoder()
    before = weights(enc)
    with pytest.raises(error, match=match):
        make_call(enc)
    assert_same(before, weights(enc))


def test_views_on_another_device_are_refused():
    with pytest.raises(ValueError, match="output of `views` is on meta"):
        pretrain_vicreg(encoder(), MetaViews(), prior(), num_simulations=200, **FAST)


def test_encoder_output_must_be_batch_by_dim():
    flat = FlatEncoder()
    before = weights(flat)
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        pretrain_vicreg(flat, ToyViews(), prior(), num_simulations=200, freeze="none", **FAST)
    assert_same(before, weights(flat))


def test_backbone_freeze_needs_backbone_and_head():
    plain = nn.Linear(LENGTH, 3)
    with pytest.raises(ValueError, match="backbone"):
        pretrain_vicreg(plain, ToyViews(), prior(), num_simulations=200, freeze="backbone", **FAST)


def test_prior_on_another_device_is_refused():
    class MetaPrior:
        def sample(self, shape):
            return torch.zeros(*shape, 2, device="meta")

    with pytest.raises(ValueError, match="prior's samples is on meta"):
        pretrain_vicreg(encoder(), ToyViews(), MetaPrior(), num_simulations=200, **FAST)
