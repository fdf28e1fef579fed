"""Object-position read-out: how well a linear map of the frozen representation recovers the true
object centres (the SSVAE seed's moving-balls evaluation, "InfoNCE is a variational autoencoder").

The data set names its position attributes in (``<object>_x``, ``<object>_y``) pairs, in pixels
(moving-balls: ``red_x, red_y, green_x, ...``). An affine map [z, 1] W is fitted by least squares in
closed form (pseudo-inverse, float64) on all train frames and applied to the test frames; there is
nothing to select, so the validation split is not used. Reported, on test:

* ``position_error_px``: mean over frames and objects of the Euclidean distance between predicted and
  true centre, in pixels;
* ``position_baseline_px``: the same for the trivial prediction "every centre at its train mean";
* ``position_r2``: 1 - residual / total sum of squares over all coordinates (1 is perfect, 0 is the
  baseline's level);
* ``position_matched_px``: object-wise read-out, for representations whose units come in (x, y)
  pairs (units 2j, 2j + 1), as the ``balls`` encoder's centres of mass do: each object's centre is
  read out affinely from one unit pair only, objects are matched one-to-one to pairs by the Hungarian
  algorithm on the sum of the read-outs' train errors, and the mean test error under that matching is
  reported (the test frames choose nothing). Small only when each
  pair tracks one object by itself; omitted when there are fewer pairs than objects.

Why both: a centre of mass of any map that responds to non-overlapping, never-clipped balls is close
to an affine function of all the centres, so the joint read-out is near-perfect even for an untrained
``balls`` encoder (a couple of pixels at 64 x 64); the matched read-out separates an encoder whose
maps each follow one ball from one whose maps mix them.
"""

from __future__ import annotations

from typing import Any

import torch

from sslbench import hookimpl
from sslbench.sdk.api import EvalInputs, Evaluator, Metric


def position_columns(attr_names: list[str] | tuple[str, ...], attr_kinds: list[str] | tuple[str, ...]) -> list[tuple[int, int]]:
    """(x column, y column) of every continuous ``<object>_x``/``<object>_y`` attribute pair."""
    continuous = {name: i for i, name in enumerate(attr_names) if i < len(attr_kinds) and attr_kinds[i] == "continuous"}
    return [
        (i, continuous[name[:-2] + "_y"])
        for name, i in continuous.items()
        if name.endswith("_x") and name[:-2] + "_y" in continuous
    ]


def affine_fit(train_z: torch.Tensor, train_t: torch.Tensor) -> torch.Tensor:
    """The least-squares affine map [z, 1] W from ``train_z`` to ``train_t`` (closed form,
    pseudo-inverse in float64, so rank-deficient representations are fine)."""
    ones = torch.ones(train_z.shape[0], 1, dtype=torch.float64, device=train_z.device)
    return torch.linalg.pinv(torch.cat([train_z.double(), ones], 1)) @ train_t.double()


def affine_apply(w: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """[z, 1] w in float64."""
    ones = torch.ones(z.shape[0], 1, dtype=torch.float64, device=z.device)
    return torch.cat([z.double(), ones], 1) @ w


def affine_readout(train_z: torch.Tensor, train_t: torch.Tensor, test_z: torch.Tensor) -> torch.Tensor:
    """Least-squares affine map from ``train_z`` to ``train_t`` (:func:`affine_fit`), applied to ``test_z``."""
    return affine_apply(affine_fit(train_z, train_t), test_z)


def mean_centre_distance(pred: torch.Tensor, true: torch.Tensor) -> float:
    """Mean Euclidean distance between predicted and true (x, y) centres; columns are x, y pairs."""
    diff = (pred - true).view(true.shape[0], -1, 2)
    return diff.norm(dim=2).mean().item()


def matched_pair_error(train_z: torch.Tensor, train_t: torch.Tensor, test_z: torch.Tensor, test_t: torch.Tensor) -> float | None:
    """Mean test error when each object's (x, y) is read out affinely from its own unit pair
    (2j, 2j + 1), objects matched to distinct pairs by the Hungarian algorithm on the TRAIN errors
    (each read-out fitted and scored on train), the test error then read under that same matching:
    nothing about the test frames chooses it. None when the representation has fewer unit pairs than
    there are objects."""
    from scipy.optimize import linear_sum_assignment

    pairs, objects = train_z.shape[1] // 2, train_t.shape[1] // 2
    if pairs < objects:
        return None
    train_cost = torch.empty(pairs, objects, dtype=torch.float64)
    test_cost = torch.empty(pairs, objects, dtype=torch.float64)
    for j in range(pairs):
        zj_train, zj_test = train_z[:, 2 * j : 2 * j + 2], test_z[:, 2 * j : 2 * j + 2]
        for k in range(objects):
            w = affine_fit(zj_train, train_t[:, 2 * k : 2 * k + 2])
            train_cost[j, k] = mean_centre_distance(affine_apply(w, zj_train), train_t[:, 2 * k : 2 * k + 2])
            test_cost[j, k] = mean_centre_distance(affine_apply(w, zj_test), test_t[:, 2 * k : 2 * k + 2])
    rows, cols = linear_sum_assignment(train_cost.numpy())
    return float(test_cost[rows, cols].mean())


class PositionReadout(Evaluator):
    name = "position"
    description = "linear read-out of object centres (pixels) from the representation, e.g. moving-balls"
    metrics = (
        Metric("position_error_px", unit="pixels", higher_is_better=False, role="headline", section="position",
               help="mean distance between the affinely read-out and the true object centres on test"),
        Metric("position_baseline_px", unit="pixels", higher_is_better=None, role="headline", section="position",
               help="the same distance for the prediction 'every centre at its train mean' (the level to beat)"),
        Metric("position_r2", unit="r2", higher_is_better=True, role="headline", section="position",
               help="R² of the affine read-out over all centre coordinates (1 perfect, 0 the baseline's level)"),
        Metric("position_matched_px", unit="pixels", higher_is_better=False, role="headline", section="position",
               help="mean test error when each object is read out from its own unit pair, pairs matched to objects on train (Hungarian)"),
    )

    def applies(self, inputs: EvalInputs) -> str | None:
        reason = super().applies(inputs)
        if reason:
            return reason
        data = inputs.data
        if data.train_attrs is None or data.test_attrs is None or not position_columns(data.attr_names, data.attr_kinds):
            return (
                f"data set {data.name!r} has no continuous <object>_x/<object>_y position attributes "
                "(the position evaluator is for data sets such as moving-balls)"
            )
        return None

    def evaluate(self, inputs: EvalInputs, **options: Any) -> dict[str, float]:
        data = inputs.data
        reason = self.applies(inputs)
        if reason:
            raise ValueError(reason)
        cols = [c for pair in position_columns(data.attr_names, data.attr_kinds) for c in pair]
        train_t = data.train_attrs[:, cols].double().to(inputs.train_z.device)  # type: ignore[index]
        test_t = data.test_attrs[:, cols].double().to(inputs.test_z.device)  # type: ignore[index]
        pred = affine_readout(inputs.train_z, train_t, inputs.test_z)
        mean = train_t.mean(0, keepdim=True).expand_as(test_t)
        total = (test_t - test_t.mean(0, keepdim=True)).pow(2).sum().clamp_min(1e-12)
        scores = {
            "position_error_px": mean_centre_distance(pred, test_t),
            "position_baseline_px": mean_centre_distance(mean, test_t),
            "position_r2": 1.0 - ((pred - test_t).pow(2).sum() / total).item(),
        }
        matched = matched_pair_error(inputs.train_z, train_t, inputs.test_z, test_t)
        if matched is not None:
            scores["position_matched_px"] = matched
        return scores


@hookimpl
def register_evaluators(register) -> None:  # type: ignore[no-untyped-def]
    register(PositionReadout)
