"""Evaluators of the full protocol against cases with a known answer: GMM clustering, MLP and linear
probes (top-5 included), attribute probes, and unlabelled (-1) samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sslbench.sdk.api import EvalInputs, ImageData, Method, resolve_params
from sslbench.sdk.data import validation_index
from sslbench.sdk.evaluation import hungarian_accuracy, labelled, r2_score, ridge_curve


class Frozen(Method):
    """Evaluators here only read the embeddings; the method is a placeholder."""

    name = "frozen"


def make_inputs(train_z, train_y, test_z, test_y, selection="val", train_attrs=None, test_attrs=None, names=(), kinds=()):  # type: ignore[no-untyped-def]
    data = ImageData(
        name="toy", train_x=torch.zeros(len(train_y), 1, 1, 1, dtype=torch.uint8), train_y=train_y,
        test_x=torch.zeros(len(test_y), 1, 1, 1, dtype=torch.uint8), test_y=test_y,
        train_attrs=train_attrs, test_attrs=test_attrs, attr_names=names, attr_kinds=kinds,
    )
    return EvalInputs(
        train_z=train_z, test_z=test_z, data=data, method=Frozen(None), device=torch.device("cpu"), seed=0,  # type: ignore[arg-type]
        selection=selection, val_index=validation_index(train_y),
    )


def run(registry, name: str, inputs: EvalInputs, **given) -> dict[str, float]:  # type: ignore[no-untyped-def]
    cls = registry.evaluators[name]
    evaluator = cls()
    assert evaluator.applies(inputs) is None
    return evaluator.evaluate(inputs, **resolve_params(name, cls.params, given))


def blobs(n_per: int, centres: torch.Tensor, spread: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    k, d = centres.shape
    y = torch.arange(k).repeat_interleave(n_per)
    z = centres[y] + spread * torch.randn(len(y), d, generator=g)
    perm = torch.randperm(len(y), generator=g)
    return z[perm], y[perm]


# --------------------------------------------------------------------------------------------------
# GMM


def test_hungarian_accuracy_matches_by_the_best_permutation() -> None:
    true = np.array([0, 0, 1, 1, 2, 2])
    assert hungarian_accuracy(true, np.array([2, 2, 0, 0, 1, 1])) == 1.0  # relabelled clusters
    assert hungarian_accuracy(true, np.array([0, 0, 0, 0, 1, 1])) == pytest.approx(4 / 6)  # one cluster must go unmatched
    # clusters {0,1}, {0,2}, {1,2}: any one-to-one matching gets one image right per cluster
    assert hungarian_accuracy(true, np.array([0, 1, 2, 0, 1, 2])) == pytest.approx(3 / 6)


def test_gmm_on_well_separated_blobs_is_perfect(registry) -> None:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 6, generator=g) * 20
    train_z, train_y = blobs(60, centres, 1.0, g)
    test_z, test_y = blobs(30, centres, 1.0, g)
    # anisotropic blobs: full covariance matters, and the labels are a permutation of the clusters
    stretch = torch.diag(torch.tensor([5.0, 1, 1, 0.2, 1, 3]))
    out = run(registry, "gmm", make_inputs(train_z @ stretch, train_y, test_z @ stretch, (test_y + 1) % 4), n_init=2)
    assert out == {"gmm_acc": 1.0, "gmm_ari": 1.0, "gmm_nmi": pytest.approx(1.0)}


def test_gmm_on_one_blob_scores_chance_and_drops_unlabelled(registry) -> None:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(1)
    train_z, test_z = torch.randn(300, 3, generator=g), torch.randn(200, 3, generator=g)
    train_y = torch.randint(0, 2, (300,), generator=g)
    test_y = torch.randint(0, 2, (200,), generator=g)
    test_y[:50] = -1  # unlabelled test images are not scored
    out = run(registry, "gmm", make_inputs(train_z, train_y, test_z, test_y), n_init=1)
    assert abs(out["gmm_ari"]) < 0.05 and out["gmm_nmi"] < 0.05 and 0.5 <= out["gmm_acc"] < 0.62


# --------------------------------------------------------------------------------------------------
# probes


@pytest.mark.parametrize("name", ["linear", "mlp"])
@pytest.mark.parametrize("selection", ["val", "test"])
def test_probes_reach_100_percent_on_linearly_separable_classes(registry, name: str, selection: str) -> None:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(2)
    centres = torch.eye(10, 12) * 8
    train_z, train_y = blobs(40, centres, 0.5, g)
    test_z, test_y = blobs(10, centres, 0.5, g)
    out = run(registry, name, make_inputs(train_z, train_y, test_z, test_y, selection), epochs=15, batch_size=16, lr=0.05)
    if selection == "test":
        assert out[f"{name}_acc"] == 1.0 and out[f"{name}_top5"] == 1.0
    else:  # the epoch chosen on a 40-image validation split may be one where a test image is still wrong
        assert out[f"{name}_acc"] >= 0.98 and out[f"{name}_top5"] == 1.0
    assert 1 <= out[f"{name}_epoch"] <= 15


def test_mlp_probe_solves_xor_where_the_linear_probe_cannot(registry) -> None:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(3)
    corners = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]]) * 3
    train_z, corner = blobs(100, corners, 0.4, g)
    test_z, test_corner = blobs(50, corners, 0.4, g)
    train_y, test_y = corner // 2, test_corner // 2  # same-sign corners are class 0
    inputs = make_inputs(train_z, train_y, test_z, test_y)
    mlp = run(registry, "mlp", inputs, epochs=40, hidden=32, lr=1e-2)
    linear = run(registry, "linear", inputs, epochs=40)
    assert mlp["mlp_acc"] > 0.97 and linear["linear_acc"] < 0.8
    assert "mlp_top5" not in mlp and "linear_top5" not in linear  # only with more than five classes


@pytest.mark.parametrize("name", ["linear", "mlp"])
def test_top5_differs_from_top1_when_classes_come_in_indistinguishable_pairs(registry, name: str) -> None:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(4)
    centres = torch.eye(5, 8) * 8
    train_z, pair = blobs(40, centres, 0.3, g)
    test_z, test_pair = blobs(40, centres, 0.3, g)
    # classes 2p and 2p+1 share blob p: top-1 is a coin flip between the two, top-5 always has both
    train_y = 2 * pair + torch.randint(0, 2, pair.shape, generator=g)
    test_y = 2 * test_pair + torch.randint(0, 2, test_pair.shape, generator=g)
    out = run(registry, name, make_inputs(train_z, train_y, test_z, test_y, "test"), epochs=10, batch_size=16)
    assert out[f"{name}_top5"] >= 0.95 and 0.4 < out[f"{name}_acc"] < 0.7


def test_labelled_drops_minus_one_and_renumbers_the_splits() -> None:
    train_y = torch.tensor([0, -1, 1, 1, -1, 0])
    train_z = torch.arange(6.0).view(6, 1)
    test_y = torch.tensor([-1, 1])
    lab = labelled(train_z, train_y, torch.tensor([[7.0], [8.0]]), test_y, torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5]))
    assert lab.train_y.tolist() == [0, 1, 1, 0] and lab.train_z.view(-1).tolist() == [0, 2, 3, 5]
    assert lab.fit_index.tolist() == [0, 1, 2]  # train 0, 2, 3 -> positions 0, 1, 2
    assert lab.val_index.tolist() == [3]  # train 5 -> position 3
    assert lab.test_y.tolist() == [1] and lab.test_z.view(-1).tolist() == [8.0]


@pytest.mark.parametrize("name", ["linear", "mlp"])
def test_probes_ignore_unlabelled_samples(registry, name: str) -> None:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(5)
    centres = torch.eye(3, 4) * 8
    train_z, train_y = blobs(100, centres, 0.5, g)
    test_z, test_y = blobs(20, centres, 0.5, g)
    train_y[::4] = -1  # e.g. CelebA faces with no or several hair colours
    test_y[::3] = -1
    out = run(registry, name, make_inputs(train_z, train_y, test_z, test_y), epochs=10, batch_size=16, lr=0.05)
    assert out[f"{name}_acc"] == 1.0


# --------------------------------------------------------------------------------------------------
# attributes


def test_r2_and_ridge_recover_a_linear_target() -> None:
    t = torch.tensor([1.0, 2.0, 3.0])
    assert r2_score(t, t) == 1.0 and r2_score(t, torch.full((3,), 2.0)) == 0.0
    assert r2_score(t, torch.tensor([3.0, 2.0, 1.0])) == pytest.approx(-3.0)
    g = torch.Generator().manual_seed(6)
    z = torch.randn(200, 5, generator=g)
    target = z @ torch.tensor([1.0, -2.0, 0.0, 0.5, 0.0]) + 3
    curve = ridge_curve(z[:100], target[:100], z[100:150], target[100:150], z[150:], target[150:], [1e-6, 10.0])
    assert curve.values == [1e-6, 10.0] and curve.test[0] > 0.999999 and curve.test[1] < 0.2


def attribute_data(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings (n, 6) and attributes: a known linear factor, a random one, a known category
    (the sign pattern of two dimensions), a random category, a known binary with NaN gaps."""
    z = torch.randn(n, 6, generator=g)
    known = 2 * z[:, 0] - z[:, 1] + 0.5
    random = torch.randn(n, generator=g)
    category = (z[:, 2] > 0).float() * 2 + (z[:, 3] > 0).float()  # 4 classes
    random_category = torch.randint(0, 3, (n,), generator=g).float()
    binary = (z[:, 4] > 0).float()
    binary[::5] = math.nan  # unknown entries are left out
    return z, torch.stack([known, random, category, random_category, binary], 1)


def test_attributes_recover_known_factors_and_not_random_ones(registry) -> None:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(7)
    train_z, train_a = attribute_data(1500, g)
    test_z, test_a = attribute_data(500, g)
    names = ("known", "random", "category", "random_category", "binary")
    kinds = ("continuous", "continuous", "categorical", "categorical", "binary")
    inputs = make_inputs(train_z, torch.zeros(1500, dtype=torch.long), test_z, torch.zeros(500, dtype=torch.long),
                         train_attrs=train_a, test_attrs=test_a, names=names, kinds=kinds)
    out = run(registry, "attributes", inputs, epochs=30, batch_size=32)
    assert set(out) == {f"attr_{n}" for n in names} | {"attr_mean_acc", "attr_mean_r2"}
    assert out["attr_known"] > 0.9999 and abs(out["attr_random"]) < 0.05
    assert out["attr_category"] > 0.97 and out["attr_random_category"] < 0.42  # chance is 1/3
    assert out["attr_binary"] > 0.97
    assert out["attr_mean_r2"] == pytest.approx((out["attr_known"] + out["attr_random"]) / 2)
    assert out["attr_mean_acc"] == pytest.approx((out["attr_category"] + out["attr_random_category"] + out["attr_binary"]) / 3)


def test_attributes_on_shapes_read_style_from_pixels_but_not_from_noise(registry) -> None:  # type: ignore[no-untyped-def]
    data = registry.datasets["shapes"]().load(None, n_train=1200, n_test=300, seed=0)
    data_y_of = {1200: data.train_y, 300: data.test_y}

    def features(x: torch.Tensor) -> torch.Tensor:  # a hand-made "representation": colour and mass moments
        x = x.float() / 255
        cover = x.amax(1)
        grid = (torch.arange(32) + 0.5) / 16 - 1
        mass = cover.sum((1, 2)).clamp_min(1e-6)
        com_x = (cover * grid.view(1, 1, 32)).sum((1, 2)) / mass
        com_y = (cover * grid.view(1, 32, 1)).sum((1, 2)) / mass
        size_by_class = torch.nn.functional.one_hot(data_y_of[len(x)], 5) * mass.sqrt()[:, None]  # areas differ by shape
        return torch.cat([x.amax((2, 3)), com_x[:, None], com_y[:, None], size_by_class], 1)

    inputs = make_inputs(features(data.train_x), data.train_y, features(data.test_x), data.test_y,
                         train_attrs=data.train_attrs, test_attrs=data.test_attrs, names=data.attr_names, kinds=data.attr_kinds)
    out = run(registry, "attributes", inputs, epochs=30, batch_size=64)
    assert out["attr_colour"] == 1.0 and out["attr_x"] > 0.99 and out["attr_y"] > 0.99 and out["attr_scale"] > 0.97
    assert abs(out["attr_rot_cos"]) < 0.1 and abs(out["attr_rot_sin"]) < 0.1  # moments carry no rotation

    g = torch.Generator().manual_seed(0)
    noise = make_inputs(torch.randn(1200, 8, generator=g), data.train_y, torch.randn(300, 8, generator=g), data.test_y,
                        train_attrs=data.train_attrs, test_attrs=data.test_attrs, names=data.attr_names, kinds=data.attr_kinds)
    noisy = run(registry, "attributes", noise, epochs=10)
    assert noisy["attr_colour"] < 0.3 and noisy["attr_mean_r2"] < 0.05  # chance colour is 1/6


def test_attributes_do_not_apply_without_attributes(registry) -> None:  # type: ignore[no-untyped-def]
    inputs = make_inputs(torch.randn(20, 2), torch.zeros(20, dtype=torch.long), torch.randn(5, 2), torch.zeros(5, dtype=torch.long))
    reason = registry.evaluators["attributes"]().applies(inputs)
    assert reason is not None and "no attributes" in reason

