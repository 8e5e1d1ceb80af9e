"""On-the-fly augmentation, the lr schedule and the weight average of the training recipe."""

import math

import pytest
import torch

from sercloak import augment
from sercloak.train import RECIPES, TrainConfig, WeightAverage, lr_factor, recipe_config

FLOOR = -100.0


def batch(seed=0, n=6):
    return torch.randn(n, 200, 128, generator=torch.Generator().manual_seed(seed)) * 10 - 50


def gen(seed=1):
    return torch.Generator().manual_seed(seed)


AUGMENTATIONS = {
    "warp": lambda x, s, g: augment.warp(x, s, s, g),
    "gain": lambda x, s, g: augment.random_gain(x, 6 * s, FLOOR, g),
    "spec_augment": lambda x, s, g: augment.spec_augment(x, torch.zeros(128), int(2 * s), g),
    "mixup": lambda x, s, g: augment.mixup(x, torch.eye(4)[torch.arange(len(x)) % 4], s, g)[0],
}


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_shape_determinism_and_identity_at_zero(name):
    apply = AUGMENTATIONS[name]
    x = batch()
    a, b, c = apply(x, 0.2 if name != "spec_augment" else 1, gen(1)), \
        apply(x, 0.2 if name != "spec_augment" else 1, gen(1)), \
        apply(x, 0.2 if name != "spec_augment" else 1, gen(2))
    assert a.shape == x.shape
    assert torch.equal(a, b)  # the same seed, the same augmentation
    assert not torch.equal(a, c) and not torch.equal(a, x)  # another seed, another draw
    assert torch.equal(apply(x, 0, gen(1)), x)  # strength 0 is the identity


def test_warp_by_factor_one_is_the_identity_and_stretches_otherwise():
    x = batch()
    ones = torch.ones(len(x))
    torch.testing.assert_close(augment.warp_by(x, ones, ones), x, atol=1e-3, rtol=0)
    ramp = torch.arange(128.0).expand(1, 200, 128)  # each bin holds its own index
    warped = augment.warp_by(ramp, torch.ones(1), torch.tensor([1.1]))
    # output bin f reads input bin 1.1 f (anchored at 0 Hz), clamped at the top
    torch.testing.assert_close(warped[0, 0, :100], 1.1 * torch.arange(100.0), atol=1e-3, rtol=0)
    assert warped[0, 0, -1] == pytest.approx(127, abs=1e-3)
    frames = torch.arange(200.0)[None, :, None].expand(1, 200, 128)
    slower = augment.warp_by(frames, torch.tensor([0.9]), torch.ones(1))
    # time is squeezed about the centre (frame 99.5): frame t reads 99.5 + 0.9 (t - 99.5)
    assert slower[0, 0, 0] == pytest.approx(99.5 - 0.9 * 99.5, abs=1e-3)


def test_gain_is_one_offset_per_segment_and_respects_the_floor():
    x = batch()
    x[0, :10] = FLOOR  # digital silence stays at the floor
    out = augment.random_gain(x, 6.0, FLOOR, gen())
    offsets = (out - x)[:, 50:].mean(dim=(1, 2))
    torch.testing.assert_close(out[:, 50:] - x[:, 50:],
                               offsets[:, None, None].expand(-1, 150, 128), atol=1e-4, rtol=0)
    assert offsets.abs().max() <= 6 and (out >= FLOOR).all()


def test_mixup_keeps_the_segment_the_larger_part_and_mixes_labels_alike():
    x, y = batch(n=8), torch.eye(4)[torch.arange(8) % 4]
    mixed, targets = augment.mixup(x, y, 0.4, gen())
    assert torch.allclose(targets.sum(1), torch.ones(8))
    own = targets[torch.arange(8), torch.arange(8) % 4]
    assert (own >= 0.5 - 1e-6).all()


def test_schedule_warms_up_then_decays_to_zero():
    cfg = TrainConfig(lr=1e-3, warmup_epochs=1, schedule="cosine", max_epochs=11)
    assert lr_factor(0, cfg) == 0 and lr_factor(0.5, cfg) == pytest.approx(0.5)
    assert lr_factor(1, cfg) == pytest.approx(1)
    assert lr_factor(6, cfg) == pytest.approx(0.5)  # half way through the cosine
    assert lr_factor(11, cfg) == pytest.approx(0, abs=1e-12)
    factors = [lr_factor(e / 10, cfg) for e in range(10, 111)]
    assert all(a >= b for a, b in zip(factors, factors[1:], strict=False))
    assert lr_factor(5, TrainConfig()) == 1  # the paper: constant
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="step")


def test_weight_average_follows_the_ema_formula():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(model, decay=0.9)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model.train()(torch.randn(8, 3))  # moves batch-norm statistics too
    average.update(model)
    d = min(0.9, 2 / 11)  # the first update's lowered decay
    new = model.state_dict()
    for k, v in average.model.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, d * start[k] + (1 - d) * new[k])
        else:
            assert torch.equal(v, new[k])  # counters are copied
    for _ in range(200):  # an unchanging model: the average converges to it
        average.update(model)
    torch.testing.assert_close(average.model[0].weight, model[0].weight)


def test_recipes():
    assert recipe_config("paper", "emotion") == TrainConfig(task="emotion", recipe="paper")
    strong = recipe_config("strong", "gender", lr=5e-4, seed=None)
    assert strong.lr == 5e-4 and strong.recipe == "strong" and strong.seed == 0
    assert strong.select == "last" and strong.ema > 0
    assert set(RECIPES["strong"]) == {"emotion", "gender"}
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe_config("magic", "emotion")
    assert not math.isnan(lr_factor(0.5, strong))
