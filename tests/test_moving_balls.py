"""The moving-balls video, its encoder architecture and protocol, and the position evaluator.
Small videos (64 x 64 or less, a few hundred frames) so everything runs in seconds on one thread."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sslbench.sdk.api import BuildContext, EvalInputs, ImageData, Method
from sslbench.engine.augment import augment
from sslbench_plugins.datasets.moving_balls import MOVING_BALLS, CentreOfMass, MovingBalls, render, simulate_centres


@pytest.fixture(scope="module")
def small() -> ImageData:
    return MovingBalls().load(None, frames=200, size=64, seed=3)


def test_video_is_seeded(small: ImageData) -> None:
    again = MovingBalls().load(None, frames=200, size=64, seed=3)
    other = MovingBalls().load(None, frames=200, size=64, seed=4)
    assert torch.equal(small.train_x, again.train_x) and torch.equal(small.test_attrs, again.test_attrs)
    assert not torch.equal(small.train_attrs, other.train_attrs)


@pytest.mark.parametrize("size", [32, 64, 256])
def test_balls_move_one_diameter_stay_inside_and_never_overlap(size: int) -> None:
    frames = 300
    c = simulate_centres(frames, size, seed=1)
    diameter, radius = size / 8, size / 16
    assert c.shape == (frames, 3, 2)
    assert (c >= radius - 1e-9).all() and (c <= size - radius + 1e-9).all()
    gaps = np.linalg.norm(c[:, :, None] - c[:, None], axis=-1)[:, [0, 0, 1], [1, 2, 2]]
    assert (gaps >= diameter).all()
    step = np.linalg.norm(np.diff(c, axis=0), axis=-1)
    # a step is one diameter, shorter only when the ball was reflected off a wall in that step
    near_wall = ((c[1:] <= radius + diameter) | (c[1:] >= size - radius - diameter)).any(-1)
    assert np.allclose(step[~near_wall], diameter)
    assert (step <= diameter + 1e-9).all()


def test_headings_turn_by_at_most_two_degrees_unless_a_collision_or_wall_intervenes() -> None:
    size = 256
    c = simulate_centres(400, size, seed=2)
    d = np.diff(c, axis=0)
    turn = np.degrees(np.abs(np.angle(np.exp(1j * (np.arctan2(d[1:, ..., 1], d[1:, ..., 0]) - np.arctan2(d[:-1, ..., 1], d[:-1, ..., 0]))))))
    far = ((c[1:-1] > size / 4) & (c[1:-1] < 3 * size / 4)).all(-1) & ((c[2:] > size / 4) & (c[2:] < 3 * size / 4)).all(-1)
    free = turn[far]
    assert free.size > 50
    # most turns are the +-2 degree noise; the doubled noise after a near-collision is rarer
    assert np.mean(free <= 2.0 + 1e-6) > 0.8
    assert free.max() > 0  # headings do wander


def test_rendered_channels_put_each_ball_at_its_label(small: ImageData) -> None:
    x = torch.cat([small.train_x, small.test_x]).float()
    attrs = torch.cat([small.train_attrs, small.test_attrs]).view(-1, 3, 2)
    com = CentreOfMass()(x).view(-1, 3, 2)  # channel k's centre of mass in pixels
    assert (com - attrs).norm(dim=-1).max().item() < 0.05
    # one ball per channel, the area of a disc of diameter size / 8
    mass = x.sum((2, 3)) / 255
    assert torch.allclose(mass, torch.full_like(mass, math.pi * (64 / 16) ** 2), rtol=0.03)


def test_image_data_split_and_next_frame_pairs(small: ImageData) -> None:
    assert small.train_x.shape == (160, 3, 64, 64) and small.test_x.shape == (40, 3, 64, 64)
    assert small.train_x.dtype == torch.uint8
    assert small.train_attrs.shape == (160, 6) and small.test_attrs.shape == (40, 6)
    assert list(small.attr_names) == ["red_x", "red_y", "green_x", "green_y", "blue_x", "blue_y"]
    assert set(small.attr_kinds) == {"continuous"}
    assert small.num_classes == 1 and int(small.train_y.abs().sum()) == 0
    nxt = small.train_next
    assert nxt is not None and nxt.shape == (160,)
    assert torch.equal(nxt[:-1], torch.arange(1, 160)) and nxt[-1].item() == -1
    # the test segment continues the video: its first frame is one step after the last train frame
    step = (small.test_attrs[0] - small.train_attrs[-1]).view(3, 2).norm(dim=1)
    assert (step <= 64 / 8 + 1e-4).all()


def test_render_rejects_more_balls_than_channels() -> None:
    with pytest.raises(ValueError, match="at most 3"):
        render(np.zeros((1, 4, 2)), 32)


def test_protocol_is_the_seeds_setup() -> None:
    p = MovingBalls.protocol
    assert p is MOVING_BALLS
    assert (p.architecture, p.latent_dim, p.batch_size, p.optimizer) == ("balls", 6, 30, "sgd")
    assert all(p.lr_for(f) == 0.005 for f in ("generative", "discriminative", "probabilistic", "baseline"))
    x = torch.rand(4, 3, 16, 16)
    out = augment(x, p.augment, torch.Generator().manual_seed(0))
    assert torch.allclose(out, x, atol=1e-5)  # identity augmentation


def test_centre_of_mass_in_pixels() -> None:
    maps = torch.zeros(2, 1, 10, 20)
    maps[0, 0, 3, 7] = 1.0  # a single pixel: its centre (7.5, 3.5)
    maps[1, 0, 0, :] = 1.0  # the top row: centre (10, 0.5)
    assert torch.allclose(CentreOfMass()(maps), torch.tensor([[7.5, 3.5], [10.0, 0.5]]))


def test_balls_architecture(registry, small: ImageData) -> None:  # type: ignore[no-untyped-def]
    ctx = BuildContext(
        protocol=MOVING_BALLS, image_shape=small.image_shape, num_train=160, num_classes=1,
        device=torch.device("cpu"), architectures=registry.architectures,
    )
    enc = ctx.encoder()
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(3, 6, (3, 3)), (6, 3, (3, 3))]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in enc.modules()) == 2
    z = enc(small.train_x[:5].float() / 255)
    assert z.shape == (5, 6) and (z >= 0).all() and (z <= 64).all()
    assert ctx.encoder(12)(small.train_x[:2].float() / 255).shape == (2, 12)
    with pytest.raises(ValueError, match="even"):
        ctx.encoder(5)
    with pytest.raises(NotImplementedError, match="position"):
        ctx.decoder()


def test_registered(registry) -> None:  # type: ignore[no-untyped-def]
    assert registry.datasets["moving-balls"] is MovingBalls
    assert "balls" in registry.architectures and "position" in registry.evaluators


# ---------------------------------------------------------------------------------------------
# the position evaluator


class _Codes(Method):
    name = "codes"

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - not called
        raise NotImplementedError


def position_scores(registry, data: ImageData, train_z: torch.Tensor, test_z: torch.Tensor) -> dict[str, float]:  # type: ignore[no-untyped-def]
    ctx = BuildContext(protocol=MOVING_BALLS, image_shape=data.image_shape, num_train=len(train_z), num_classes=1, device=torch.device("cpu"))
    inputs = EvalInputs(
        train_z=train_z, test_z=test_z, data=data, method=_Codes(ctx), device=torch.device("cpu"),
        seed=0, selection="val", val_index=torch.arange(5),
    )
    evaluator = registry.evaluators["position"]()
    assert evaluator.applies(inputs) is None
    return evaluator.evaluate(inputs)


def test_position_readout_recovers_linearly_encoded_centres(registry, small: ImageData) -> None:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(0)
    mix, shift = torch.randn(6, 6, generator=g), torch.randn(6, generator=g)
    scores = position_scores(registry, small, small.train_attrs @ mix + shift, small.test_attrs @ mix + shift)
    assert scores["position_error_px"] < 1e-3 and scores["position_r2"] == pytest.approx(1.0, abs=1e-6)
    # a dense mix puts every ball into every unit pair: the object-wise read-out cannot undo it
    assert scores["position_matched_px"] > 3.0
    # the baseline is the distance to the train mean, computed by hand
    mean = small.train_attrs.mean(0).view(3, 2)
    by_hand = (small.test_attrs.view(-1, 3, 2) - mean).norm(dim=-1).mean().item()
    assert scores["position_baseline_px"] == pytest.approx(by_hand, rel=1e-5)


def test_position_matched_readout_finds_permuted_one_ball_per_pair_codes(registry, small: ImageData) -> None:  # type: ignore[no-untyped-def]
    # pairs hold (scaled, shifted) ball centres in another order: the matched read-out is exact
    order = [2, 0, 1]
    def code(a: torch.Tensor) -> torch.Tensor:
        return torch.cat([0.1 * a[:, 2 * k : 2 * k + 2] - 3.0 for k in order], 1)
    scores = position_scores(registry, small, code(small.train_attrs), code(small.test_attrs))
    assert scores["position_matched_px"] < 1e-3 and scores["position_error_px"] < 1e-3


def test_position_readout_of_noise_is_no_better_than_the_baseline(registry, small: ImageData) -> None:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(1)
    scores = position_scores(registry, small, torch.randn(160, 6, generator=g), torch.randn(40, 6, generator=g))
    assert scores["position_error_px"] > 0.9 * scores["position_baseline_px"]
    assert scores["position_r2"] < 0.1


def test_position_evaluator_does_not_apply_without_position_attributes(registry) -> None:  # type: ignore[no-untyped-def]
    from sslbench_plugins.datasets.digits import Digits

    data = Digits().load(None)
    ctx = BuildContext(protocol=MOVING_BALLS, image_shape=data.image_shape, num_train=1, num_classes=10, device=torch.device("cpu"))
    inputs = EvalInputs(
        train_z=torch.zeros(len(data.train_x), 2), test_z=torch.zeros(len(data.test_x), 2), data=data,
        method=_Codes(ctx), device=torch.device("cpu"), seed=0, selection="val", val_index=torch.arange(5),
    )
    reason = registry.evaluators["position"]().applies(inputs)
    assert reason is not None and "position attributes" in reason


def test_ssvae_rbf_trains_on_moving_balls_pairs(registry) -> None:  # type: ignore[no-untyped-def]
    # through the core's own loop: pairs (frame t, frame t + 1), SGD at the protocol's rate
    from sslbench.engine.train import embed_all, train

    data = MovingBalls().load(None, frames=200, size=24, seed=0)
    ctx = BuildContext(
        protocol=MOVING_BALLS, image_shape=data.image_shape, num_train=160, num_classes=1,
        device=torch.device("cpu"), architectures=registry.architectures,
    )
    torch.manual_seed(0)
    cls = registry.methods["ssvae-rbf"]
    method = cls(ctx, **{k: p.default for k, p in cls.params.items()})
    result = train(method, data, MOVING_BALLS, epochs=6, seed=0)
    infonce = result.history["infonce"]
    assert infonce[-1] < infonce[0] - 0.3 and infonce[-1] < math.log(30)
    assert result.history["length"][-1] < 1.0  # the length scale is learned
    z = embed_all(method, data.test_x)
    assert z.shape == (40, 6) and torch.isfinite(z).all()
