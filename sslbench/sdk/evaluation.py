"""Building blocks for evaluator plugins: probes trained on cached embeddings, kNN on the device,
and the model-selection rule (validation split or test set) every reported number states."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from sslbench.sdk.metrics import Metric

if TYPE_CHECKING:
    import numpy as np

    from sslbench.sdk.api import EvalInputs


@dataclass
class Curve:
    """A hyper-parameter sweep: the candidate values and the scores on validation and test."""

    values: list[int]
    val: list[float]
    test: list[float]

    def select(self, selection: str) -> tuple[int, float]:
        """(chosen value, test score): chosen on the validation scores, or on the test scores when
        ``selection == "test"`` (the SimVAE paper's practice, optimistic by construction)."""
        scores = self.test if selection == "test" else self.val
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        return self.values[best], self.test[best]


def standardise(fit: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Centre and scale every tensor by the mean and std of ``fit`` (features with std 0 kept as 0)."""
    mean = fit.mean(0, keepdim=True)
    std = fit.std(0, keepdim=True).clamp_min(1e-8)
    return [(t - mean) / std for t in (fit, *others)]


@torch.no_grad()
def knn_predict(train_z: torch.Tensor, train_y: torch.Tensor, query_z: torch.Tensor, ks: list[int], num_classes: int, chunk: int = 2048) -> dict[int, torch.Tensor]:
    """Majority-vote kNN (Euclidean) predictions of ``query_z`` for every k in ``ks``.

    Distances are one matrix product per chunk, neighbours one top-k; ties between classes go to the
    class whose votes include the nearer neighbours.
    """
    kmax = max(ks)
    sq_train = train_z.pow(2).sum(1)
    preds: dict[int, list[torch.Tensor]] = {k: [] for k in ks}
    rank_weight = 1.0 + 1e-3 * torch.arange(kmax, 0, -1, device=train_z.device, dtype=torch.float32) / kmax
    for start in range(0, query_z.shape[0], chunk):
        q = query_z[start : start + chunk]
        d = sq_train.unsqueeze(0) - 2 * q @ train_z.t()  # + |q|^2, constant per row
        nn_idx = d.topk(kmax, dim=1, largest=False).indices
        onehot = F.one_hot(train_y[nn_idx], num_classes).float() * rank_weight.view(1, -1, 1)
        votes = onehot.cumsum(1)  # (q, kmax, classes): votes of the first k neighbours
        for k in ks:
            preds[k].append(votes[:, k - 1].argmax(1))
    return {k: torch.cat(v) for k, v in preds.items()}


def knn_curve(train_z: torch.Tensor, train_y: torch.Tensor, test_z: torch.Tensor, test_y: torch.Tensor, fit_index: torch.Tensor, val_index: torch.Tensor, ks: list[int], num_classes: int) -> Curve:
    """kNN accuracy for each k: on the validation split (neighbours from the rest of train) and on
    the test set (neighbours from all of train)."""
    val_pred = knn_predict(train_z[fit_index], train_y[fit_index], train_z[val_index], ks, num_classes)
    test_pred = knn_predict(train_z, train_y, test_z, ks, num_classes)
    val_y = train_y[val_index]
    return Curve(
        values=list(ks),
        val=[(val_pred[k] == val_y).float().mean().item() for k in ks],
        test=[(test_pred[k] == test_y).float().mean().item() for k in ks],
    )


# --- additions for the full protocol's evaluators (MLP probe, GMM, attributes, top-5) ------------


@dataclass
class Labelled:
    """The labelled part of an evaluation: train/test embeddings and labels without the samples
    labelled -1 (no class, e.g. CelebA images with zero or several hair colours), and the fit and
    validation indices renumbered into the reduced train set."""

    train_z: torch.Tensor
    train_y: torch.Tensor
    test_z: torch.Tensor
    test_y: torch.Tensor
    fit_index: torch.Tensor
    val_index: torch.Tensor


def fit_index_for(inputs: "EvalInputs") -> torch.Tensor:
    """The train indices a probe (or any fitted read-out) is trained on, by the selection rule: under
    ``--select val`` train minus the validation split (``inputs.fit_index``; the split picks the
    epoch, k or penalty); under ``--select test`` ALL of train, since the test set picks them (the
    SimVAE paper's practice) and holding the split out would only shrink the fit. Every evaluator
    that fits on train takes its fit indices from here."""
    if inputs.selection == "test":
        return torch.arange(inputs.train_z.shape[0], device=inputs.val_index.device)
    return inputs.fit_index


def labelled(train_z: torch.Tensor, train_y: torch.Tensor, test_z: torch.Tensor, test_y: torch.Tensor, fit_index: torch.Tensor, val_index: torch.Tensor) -> Labelled:
    """Drop samples whose label is negative (unlabelled) from both splits; see :class:`Labelled`.

    Usage in an evaluator: ``lab = labelled(inputs.train_z, data.train_y, inputs.test_z, data.test_y,
    inputs.fit_index, inputs.val_index)``."""
    keep_train = train_y >= 0
    keep_test = test_y >= 0
    if bool(keep_train.all()) and bool(keep_test.all()):
        return Labelled(train_z, train_y, test_z, test_y, fit_index, val_index)
    new_position = keep_train.long().cumsum(0) - 1  # index of each kept train sample after the drop
    fit = fit_index[keep_train[fit_index]]
    val = val_index[keep_train[val_index]]
    return Labelled(
        train_z[keep_train], train_y[keep_train], test_z[keep_test], test_y[keep_test],
        new_position[fit], new_position[val],
    )


def probe_curves(
    head: nn.Module,
    fit_z: torch.Tensor,
    fit_y: torch.Tensor,
    val_z: torch.Tensor,
    val_y: torch.Tensor,
    test_z: torch.Tensor,
    test_y: torch.Tensor,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    seed: int,
    topks: tuple[int, ...] = (1,),
) -> dict[int, Curve]:
    """Train ``head`` with cross-entropy on cached (standardised) embeddings, recording validation
    and test top-k accuracy after every epoch for every k in ``topks``: a ``{k: Curve}`` from ONE
    training run. Select the epoch on one of them (top-1) and read the others at that epoch with
    :func:`curve_at`. Runs on the embeddings' device."""
    g = torch.Generator(device=fit_z.device).manual_seed(seed)
    torch.manual_seed(seed)
    for module in head.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    n = fit_z.shape[0]

    @torch.no_grad()
    def accuracies(z: torch.Tensor, y: torch.Tensor) -> dict[int, float]:
        head.eval()
        logits = head(z)
        head.train()
        ranked = logits.topk(min(max(topks), logits.shape[1]), dim=1).indices == y.unsqueeze(1)
        return {k: ranked[:, :k].any(1).float().mean().item() for k in topks}

    curves = {k: Curve([], [], []) for k in topks}
    head.train()
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(n, generator=g, device=fit_z.device)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            loss = F.cross_entropy(head(fit_z[idx]), fit_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        val, test = accuracies(val_z, val_y), accuracies(test_z, test_y)
        for k in topks:
            curves[k].values.append(epoch)
            curves[k].val.append(val[k])
            curves[k].test.append(test[k])
    return curves


def curve_at(curve: Curve, value: int) -> float:
    """The test score of ``curve`` at hyper-parameter ``value`` (e.g. top-5 at the epoch chosen on
    top-1)."""
    return curve.test[curve.values.index(value)]


def r2_score(target: torch.Tensor, prediction: torch.Tensor) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot (SS_tot about the target's own mean), the
    definition of scikit-learn's ``r2_score``. A constant target (SS_tot = 0) scores 1 when predicted
    exactly and 0 otherwise, as scikit-learn does."""
    ss_res = (target - prediction).pow(2).sum()
    ss_tot = (target - target.mean()).pow(2).sum()
    if ss_tot <= 0:
        return 1.0 if ss_res <= 0 else 0.0
    return float(1.0 - ss_res / ss_tot)


def ridge_curve(fit_z: torch.Tensor, fit_t: torch.Tensor, val_z: torch.Tensor, val_t: torch.Tensor, test_z: torch.Tensor, test_t: torch.Tensor, alphas: list[float]) -> Curve:
    """Ridge regression of a scalar target on (standardised) embeddings, closed form, for each
    penalty in ``alphas``: w = (Z^T Z + alpha * n * I)^-1 Z^T (t - mean t) on the fit split (penalty
    scaled by the number of samples so one grid suits any size), with Z centred on its fit mean and
    an unpenalised intercept. Scores are R^2 on validation and test (:func:`r2_score`);
    ``Curve.values`` are the alphas."""
    mean_z = fit_z.double().mean(0, keepdim=True)
    z = fit_z.double() - mean_z
    t = fit_t.double()
    mean_t = t.mean()
    gram = z.T @ z
    rhs = z.T @ (t - mean_t)
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    curve = Curve([], [], [])
    for alpha in alphas:
        w = torch.linalg.solve(gram + alpha * z.shape[0] * eye, rhs)
        curve.values.append(alpha)  # type: ignore[arg-type]
        curve.val.append(r2_score(val_t.double(), (val_z.double() - mean_z) @ w + mean_t))
        curve.test.append(r2_score(test_t.double(), (test_z.double() - mean_z) @ w + mean_t))
    return curve


def hungarian_accuracy(true: np.ndarray, predicted: np.ndarray) -> float:
    """Clustering accuracy: the share of samples whose cluster maps to their class under the
    one-to-one cluster-to-class assignment maximising the matches (Hungarian algorithm,
    ``scipy.optimize.linear_sum_assignment``); clusters left unmatched count as errors."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    clusters, cluster_of = np.unique(predicted, return_inverse=True)
    classes, class_of = np.unique(true, return_inverse=True)
    counts = np.zeros((len(clusters), len(classes)), dtype=np.int64)
    np.add.at(counts, (cluster_of, class_of), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(true))


def classification_probe_metrics(prefix: str, probe: str) -> tuple[Metric, ...]:
    """The declarations of what :func:`classification_probe` reports under ``prefix`` (``probe`` names
    the probe in their help, e.g. "linear probe")."""
    return (
        Metric(f"{prefix}_acc", unit="fraction", higher_is_better=True, role="headline", section="content",
               help=f"test accuracy of the {probe} at the chosen epoch"),
        Metric(f"{prefix}_top5", unit="fraction", higher_is_better=True, role="secondary", section="content",
               help="test top-5 accuracy at the chosen epoch (only with more than five classes)"),
        Metric(f"{prefix}_epoch", unit="count", higher_is_better=None, role="detail", section="content",
               help="the probe epoch chosen by the selection rule (validation split or test set)"),
    )


def classification_probe(inputs: "EvalInputs", head: nn.Module, prefix: str, options: dict) -> dict[str, float]:
    """The protocol's probe evaluation shared by the linear and MLP probes: unlabelled (-1) images left
    out, features standardised on the fit split (:func:`fit_index_for`: train minus the validation
    split, or all of train under ``--select test``), ``head`` trained by :func:`probe_curves`, epoch
    chosen by ``inputs.selection``; reports ``<prefix>_acc``, ``<prefix>_epoch`` and, beyond five classes,
    ``<prefix>_top5`` at the chosen epoch (declared by :func:`classification_probe_metrics`)."""
    data = inputs.data
    lab = labelled(inputs.train_z, data.train_y, inputs.test_z, data.test_y, fit_index_for(inputs), inputs.val_index)
    fit, val = lab.fit_index, lab.val_index
    fit_z, val_z, test_z = standardise(lab.train_z[fit], lab.train_z[val], lab.test_z)
    topks = (1, 5) if data.num_classes > 5 else (1,)
    curves = probe_curves(
        head.to(fit_z.device), fit_z, lab.train_y[fit], val_z, lab.train_y[val], test_z, lab.test_y,
        epochs=int(options["epochs"]), lr=float(options["lr"]), weight_decay=float(options["weight_decay"]),
        batch_size=int(options["batch_size"]), seed=inputs.seed, topks=topks,
    )
    epoch, acc = curves[1].select(inputs.selection)
    result = {f"{prefix}_acc": acc, f"{prefix}_epoch": float(epoch)}
    if 5 in curves:
        result[f"{prefix}_top5"] = curve_at(curves[5], epoch)
    return result
