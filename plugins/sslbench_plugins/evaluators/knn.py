"""kNN classification accuracy on frozen representations, two ways.

``knn``: Euclidean distances, majority vote, k = 1..k_max (SimVAE paper, A.7.5); k chosen on the
validation split carved from train (default) or on the test set (``--select test``, as the paper did);
the chosen k is reported as ``knn_k``.

``knn-cosine``: the weighted kNN that lightly and solo-learn report beside their tables (from InstDisc,
Wu et al. 2018): cosine similarity of L2-normalised features, the k = 200 most similar train images,
each voting for its class with weight exp(similarity / temperature), temperature 0.1; the class with
the largest summed weight is the prediction. k and the temperature are fixed (no selection), so its
numbers are ``knn_cos_acc`` and ``knn_cos_top5``, columns beside the Euclidean ``knn_acc``.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from sslbench import hookimpl
from sslbench.sdk.api import EvalInputs, Evaluator, Metric, Param
from sslbench.sdk.evaluation import knn_curve, labelled


class KNN(Evaluator):
    name = "knn"
    description = "kNN accuracy (Euclidean, majority vote), best k in 1..k_max"
    params = {"k_max": Param(15, "largest k tried", minimum=1)}
    metrics = (
        Metric("knn_acc", unit="fraction", higher_is_better=True, role="headline", section="content",
               help="test accuracy of the kNN classifier at the chosen k"),
        Metric("knn_k", unit="count", higher_is_better=None, role="detail", section="content",
               help="the k chosen by the selection rule (validation split or test set)"),
    )

    def evaluate(self, inputs: EvalInputs, **options) -> dict[str, float]:  # type: ignore[no-untyped-def]
        data = inputs.data
        ks = list(range(1, int(options["k_max"]) + 1))
        # images without a label (-1, e.g. CelebA's ambiguous hair colour) are neither neighbours nor queries
        lab = labelled(inputs.train_z, data.train_y, inputs.test_z, data.test_y, inputs.fit_index, inputs.val_index)
        curve = knn_curve(lab.train_z, lab.train_y, lab.test_z, lab.test_y, lab.fit_index, lab.val_index, ks, data.num_classes)
        k, acc = curve.select(inputs.selection)
        return {"knn_acc": acc, "knn_k": float(k)}


@torch.no_grad()
def cosine_knn_scores(
    train_z: torch.Tensor, train_y: torch.Tensor, query_z: torch.Tensor, k: int, temperature: float, num_classes: int, chunk: int = 1024,
) -> torch.Tensor:
    """Each query's score per class, shape (queries, classes): the sum of exp(cosine similarity /
    ``temperature``) over those of its ``k`` most similar train images (fewer when train is smaller)
    that have that class. Features are L2-normalised first; one matrix product and one top-k per chunk."""
    bank = F.normalize(train_z.float(), dim=1)
    k = min(k, bank.shape[0])
    scores = []
    for start in range(0, query_z.shape[0], chunk):
        q = F.normalize(query_z[start : start + chunk].float(), dim=1)
        sim, idx = (q @ bank.t()).topk(k, dim=1)
        weights = (sim / temperature).exp()
        per_class = torch.zeros(q.shape[0], num_classes, device=q.device, dtype=weights.dtype)
        scores.append(per_class.scatter_add_(1, train_y[idx], weights))
    return torch.cat(scores) if scores else torch.zeros(0, num_classes, device=query_z.device)


class CosineKNN(Evaluator):
    name = "knn-cosine"
    description = "weighted kNN accuracy as lightly and solo-learn report it (cosine, k=200, weights exp(sim/0.1))"
    params = {
        "k": Param(200, "neighbours that vote (all of train when it has fewer)", minimum=1),
        "temperature": Param(0.1, "each neighbour's vote is exp(cosine similarity / temperature)", minimum=1e-6),
    }
    metrics = (
        Metric("knn_cos_acc", unit="fraction", higher_is_better=True, role="headline", section="content",
               help="test accuracy of the cosine-weighted kNN (k and temperature fixed, no selection)"),
        Metric("knn_cos_top5", unit="fraction", higher_is_better=True, role="secondary", section="content",
               help="test top-5 accuracy of the cosine-weighted kNN (data sets with more than five classes)"),
    )

    def evaluate(self, inputs: EvalInputs, **options) -> dict[str, float]:  # type: ignore[no-untyped-def]
        data = inputs.data
        lab = labelled(inputs.train_z, data.train_y, inputs.test_z, data.test_y, inputs.fit_index, inputs.val_index)
        scores = cosine_knn_scores(lab.train_z, lab.train_y, lab.test_z, int(options["k"]), float(options["temperature"]), data.num_classes)
        out = {"knn_cos_acc": (scores.argmax(1) == lab.test_y).float().mean().item()}
        if data.num_classes > 5:
            top5 = scores.topk(5, dim=1).indices
            out["knn_cos_top5"] = (top5 == lab.test_y.unsqueeze(1)).any(1).float().mean().item()
        return out


@hookimpl
def register_evaluators(register) -> None:  # type: ignore[no-untyped-def]
    register(KNN)
    register(CosineKNN)
