"""Building blocks for evaluator plugins: probes trained on cached embeddings, kNN on the device,
and the model-selection rule (validation split or test set) every reported number states."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


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


def probe_curve(
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
    topk: int = 1,
) -> Curve:
    """Train ``head`` with cross-entropy on cached (standardised) embeddings; record validation and
    test accuracy (top-``topk``) after every epoch. Runs on the embeddings' device."""
    g = torch.Generator(device=fit_z.device).manual_seed(seed)
    torch.manual_seed(seed)
    for module in head.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    n = fit_z.shape[0]

    @torch.no_grad()
    def accuracy(z: torch.Tensor, y: torch.Tensor) -> float:
        head.eval()
        logits = head(z)
        head.train()
        k = min(topk, logits.shape[1])
        hits = (logits.topk(k, dim=1).indices == y.unsqueeze(1)).any(1)
        return hits.float().mean().item()

    curve = Curve([], [], [])
    head.train()
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(n, generator=g, device=fit_z.device)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            loss = F.cross_entropy(head(fit_z[idx]), fit_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        curve.values.append(epoch)
        curve.val.append(accuracy(val_z, val_y))
        curve.test.append(accuracy(test_z, test_y))
    return curve
