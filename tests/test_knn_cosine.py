"""The cosine-weighted kNN (``knn-cosine``) against a hand computation: cosine similarity of
L2-normalised features, top-k neighbours, weights exp(sim / T), class score the sum of weights."""

from __future__ import annotations

import math

import pytest
import torch

from sslbench.sdk.api import EvalInputs, ImageData, Method, resolve_params
from sslbench.sdk.data import validation_index
from sslbench_plugins.evaluators.knn import cosine_knn_scores

# four train images in 2-D; lengths differ on purpose (only directions count after normalisation)
TRAIN_Z = torch.tensor([[2.0, 0.0], [0.0, 3.0], [10.0, 10.0], [-1.0, 0.0]])
TRAIN_Y = torch.tensor([0, 1, 1, 2])
QUERY = torch.tensor([[5.0, 0.0]])  # cosine 1, 0, 1/sqrt(2), -1 to the four


def test_scores_match_the_hand_computation() -> None:
    scores = cosine_knn_scores(TRAIN_Z, TRAIN_Y, QUERY, k=3, temperature=0.1, num_classes=3)
    # the 3 most similar: image 0 (cos 1, class 0), image 2 (cos 0.7071, class 1), image 1 (cos 0, class 1)
    expected = [math.exp(1 / 0.1), math.exp(math.sqrt(0.5) / 0.1) + math.exp(0 / 0.1), 0.0]
    assert scores.shape == (1, 3)
    assert scores[0].tolist() == pytest.approx(expected, rel=1e-5)
    assert int(scores.argmax(1)) == 0  # weighting wins: a majority vote of these 3 would say class 1


def test_a_high_temperature_is_a_majority_vote_and_k_is_capped_by_train() -> None:
    scores = cosine_knn_scores(TRAIN_Z, TRAIN_Y, QUERY, k=3, temperature=100.0, num_classes=3)
    assert int(scores.argmax(1)) == 1  # weights near 1 each: two votes for class 1 beat one for class 0
    everything = cosine_knn_scores(TRAIN_Z, TRAIN_Y, QUERY, k=200, temperature=0.1, num_classes=3)
    assert everything[0, 2].item() == pytest.approx(math.exp(-1 / 0.1), rel=1e-5)  # all 4 neighbours vote


class Frozen(Method):
    name = "frozen"


def _inputs(train_z: torch.Tensor, train_y: torch.Tensor, test_z: torch.Tensor, test_y: torch.Tensor) -> EvalInputs:
    data = ImageData(name="toy", train_x=torch.zeros(len(train_y), 1, 1, 1, dtype=torch.uint8), train_y=train_y,
                     test_x=torch.zeros(len(test_y), 1, 1, 1, dtype=torch.uint8), test_y=test_y)
    return EvalInputs(train_z=train_z, test_z=test_z, data=data, method=Frozen(None), device=torch.device("cpu"),  # type: ignore[arg-type]
                      seed=0, selection="val", val_index=validation_index(train_y))


def test_the_evaluator_is_installed_with_distinct_metrics_and_lightlys_defaults(registry) -> None:  # type: ignore[no-untyped-def]
    cls = registry.evaluators["knn-cosine"]
    assert resolve_params("knn-cosine", cls.params, {}) == {"k": 200, "temperature": 0.1}
    names = {m.name for m in cls.metrics}
    assert names == {"knn_cos_acc", "knn_cos_top5"} and not names & {m.name for m in registry.evaluators["knn"].metrics}
    assert cls.metric("knn_cos_acc").percent and cls.metric("knn_cos_acc").role == "headline"
    # two queries: the hand-computed one (class 0) and one pointing at image 3 (class 2); a third unlabelled is left out
    test_z = torch.cat([QUERY, torch.tensor([[-4.0, 0.5]]), torch.tensor([[1.0, 1.0]])])
    out = cls().evaluate(_inputs(TRAIN_Z, TRAIN_Y, test_z, torch.tensor([0, 2, -1])), k=3, temperature=0.1)
    assert out == {"knn_cos_acc": 1.0}  # three classes: no top-5
    out = cls().evaluate(_inputs(TRAIN_Z, TRAIN_Y, test_z[:2], torch.tensor([1, 2])), k=3, temperature=0.1)
    assert out["knn_cos_acc"] == 0.5


def test_top5_beyond_five_classes(registry) -> None:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(8, 16, generator=g) * 5
    train_y = torch.arange(8).repeat_interleave(30)
    test_y = torch.arange(8).repeat_interleave(5)
    train_z = centres[train_y] + torch.randn(len(train_y), 16, generator=g)
    test_z = centres[test_y] + torch.randn(len(test_y), 16, generator=g)
    cls = registry.evaluators["knn-cosine"]
    out = cls().evaluate(_inputs(train_z, train_y, test_z, test_y), **resolve_params("knn-cosine", cls.params, {}))
    assert out["knn_cos_acc"] > 0.9 and out["knn_cos_top5"] >= out["knn_cos_acc"]
