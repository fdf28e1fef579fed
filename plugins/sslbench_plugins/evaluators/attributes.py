"""Style and attribute probes: how much of each known factor a frozen representation keeps.

The SimVAE paper's point is that representations trained to be invariant to augmentations lose
style (CelebA hair colour and attributes, paper section 5 and A.7.5). For every column of the data
set's ``attrs`` (named by ``attr_names``, typed by ``attr_kinds``) a linear probe reads the factor
from the standardised representation:

* "binary" and "categorical": multinomial logistic regression (Adam, cross-entropy), scored by
  accuracy; all such columns train together as independent heads of one linear layer (the loss is a
  sum over heads, so each head's training is that of its own probe) and each picks its own epoch;
* "continuous": ridge regression in closed form, scored by R^2; the penalty is picked from a grid.

Epochs and penalties are chosen on the validation split carved from train (probes fitted on the
rest; default) or on the test set (``--select test``; probes then fitted on all of train). Targets
that are NaN (or negative for categorical columns) are unknown and left out of that column only
(e.g. the rotation of a circle).
Metrics: ``attr_<name>`` per column, ``attr_mean_acc`` over the binary/categorical ones and
``attr_mean_r2`` over the continuous ones.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from sslbench import hookimpl
from sslbench.sdk.api import EvalInputs, Evaluator, Metric, Param
from sslbench.sdk.evaluation import Curve, fit_index_for, ridge_curve, standardise

CATEGORICAL = ("binary", "categorical")
#: ridge penalties tried (times the number of fit samples; standardised inputs)
RIDGE_ALPHAS = [1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]


def categorical_targets(column: torch.Tensor) -> torch.Tensor:
    """Class indices of a binary/categorical attribute column; -1 where unknown (NaN or negative)."""
    known = torch.isfinite(column) & (column >= 0)
    return torch.where(known, column.nan_to_num(-1.0), torch.full_like(column, -1.0)).round().long()


def categorical_probe_curves(
    fit_z: torch.Tensor, fit_t: torch.Tensor, val_z: torch.Tensor, val_t: torch.Tensor, test_z: torch.Tensor,
    test_t: torch.Tensor, num_classes: list[int], epochs: int, lr: float, weight_decay: float, batch_size: int, seed: int,
) -> list[Curve]:
    """One logistic-regression probe per column of the (N, A) class-index targets (-1 = unknown),
    trained together: one linear layer gives A x C_max logits, the slots beyond a column's own classes
    are masked out, and the loss is the sum over columns of each column's mean cross-entropy on its
    known targets, so every column's weights see only their own gradient. Returns a :class:`Curve`
    of accuracies per column."""
    g = torch.Generator(device=fit_z.device).manual_seed(seed)
    torch.manual_seed(seed)
    n_attr, c_max = len(num_classes), max(num_classes)
    head = nn.Linear(fit_z.shape[1], n_attr * c_max).to(fit_z.device)
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    unused = torch.arange(c_max, device=fit_z.device).view(1, c_max) >= torch.tensor(num_classes, device=fit_z.device).view(n_attr, 1)

    def logits_of(z: torch.Tensor) -> torch.Tensor:
        return head(z).view(-1, n_attr, c_max).masked_fill(unused, -1e9)

    def loss_of(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        per = F.cross_entropy(logits.reshape(-1, c_max), t.reshape(-1), ignore_index=-1, reduction="none").view(t.shape)
        known = (t >= 0).sum(0).clamp_min(1)
        return (per.sum(0) / known).sum()

    @torch.no_grad()
    def accuracies(z: torch.Tensor, t: torch.Tensor) -> list[float]:
        hits = (logits_of(z).argmax(2) == t).float().sum(0)
        known = (t >= 0).sum(0)
        return [(h / k).item() if k > 0 else float("nan") for h, k in zip(hits, known)]

    curves = [Curve([], [], []) for _ in num_classes]
    n = fit_z.shape[0]
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(n, generator=g, device=fit_z.device)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            loss = loss_of(logits_of(fit_z[idx]), fit_t[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        for curve, v, t in zip(curves, accuracies(val_z, val_t), accuracies(test_z, test_t)):
            curve.values.append(epoch)
            curve.val.append(v)
            curve.test.append(t)
    return curves


class Attributes(Evaluator):
    name = "attributes"
    description = "per-attribute linear probes of style factors: accuracy (binary/categorical), R^2 (continuous)"
    params = {
        "epochs": Param(50, "training epochs of the logistic probes", minimum=1),
        "lr": Param(1e-2, "Adam learning rate of the logistic probes", minimum=0.0),
        "weight_decay": Param(1e-5, "L2 penalty of the logistic probes", minimum=0.0),
        "batch_size": Param(256, "batch size of the logistic probes", minimum=1),
    }
    metrics = (
        Metric("attr_mean_acc", unit="fraction", higher_is_better=True, role="headline", section="style",
               help="mean probe accuracy over the binary and categorical attributes"),
        Metric("attr_mean_r2", unit="r2", higher_is_better=True, role="headline", section="style",
               help="mean probe R² over the continuous attributes"),
        Metric("attr_*", unit="score", higher_is_better=True, role="secondary", section="style",
               help="linear probe of one attribute (`attr_<name>`): accuracy in [0, 1] (shown as is) for "
                    "binary/categorical attributes, R² for continuous ones"),
    )

    def applies(self, inputs: EvalInputs) -> str | None:
        data = inputs.data
        if data.train_attrs is None or data.test_attrs is None or not len(data.attr_names):
            return f"data set {data.name} has no attributes (use e.g. shapes or celeba)"
        unknown = sorted(set(data.attr_kinds) - {*CATEGORICAL, "continuous"})
        if unknown or len(data.attr_kinds) != len(data.attr_names):
            return f"data set {data.name} declares attribute kinds {list(data.attr_kinds)}; expected one of binary/categorical/continuous per attribute"
        return super().applies(inputs)

    def evaluate(self, inputs: EvalInputs, **options) -> dict[str, float]:  # type: ignore[no-untyped-def]
        data = inputs.data
        fit, val = fit_index_for(inputs), inputs.val_index
        fit_z, val_z, test_z = standardise(inputs.train_z[fit].float(), inputs.train_z[val].float(), inputs.test_z.float())
        train_a = data.train_attrs.float().to(fit_z.device)  # type: ignore[union-attr]
        test_a = data.test_attrs.float().to(fit_z.device)  # type: ignore[union-attr]
        names, kinds = list(data.attr_names), list(data.attr_kinds)
        result: dict[str, float] = {}
        accs: list[float] = []
        r2s: list[float] = []

        cat = [a for a, kind in enumerate(kinds) if kind in CATEGORICAL]
        if cat:
            train_t = torch.stack([categorical_targets(train_a[:, a]) for a in cat], 1)
            test_t = torch.stack([categorical_targets(test_a[:, a]) for a in cat], 1)
            num_classes = [max(2, int(max(train_t[:, i].max(), test_t[:, i].max())) + 1) for i in range(len(cat))]
            curves = categorical_probe_curves(
                fit_z, train_t[fit], val_z, train_t[val], test_z, test_t, num_classes,
                epochs=int(options["epochs"]), lr=float(options["lr"]), weight_decay=float(options["weight_decay"]),
                batch_size=int(options["batch_size"]), seed=inputs.seed,
            )
            for a, curve in zip(cat, curves):
                _, acc = curve.select(inputs.selection)
                result[f"attr_{names[a]}"] = acc
                accs.append(acc)

        for a, kind in enumerate(kinds):
            if kind != "continuous":
                continue
            t_fit, t_val, t_test = train_a[fit, a], train_a[val, a], test_a[:, a]
            kf, kv, kt = torch.isfinite(t_fit), torch.isfinite(t_val), torch.isfinite(t_test)
            curve = ridge_curve(fit_z[kf], t_fit[kf], val_z[kv], t_val[kv], test_z[kt], t_test[kt], RIDGE_ALPHAS)
            _, r2 = curve.select(inputs.selection)
            result[f"attr_{names[a]}"] = r2
            r2s.append(r2)

        if accs:
            result["attr_mean_acc"] = sum(accs) / len(accs)
        if r2s:
            result["attr_mean_r2"] = sum(r2s) / len(r2s)
        return result


@hookimpl
def register_evaluators(register) -> None:  # type: ignore[no-untyped-def]
    register(Attributes)
