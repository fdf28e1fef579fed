"""kNN classification accuracy on frozen representations, k = 1..15 (SimVAE paper, A.7.5).

Euclidean distances on the device; k chosen on the validation split carved from train (default) or
on the test set (``--select test``, as the paper did); the chosen k is reported as ``knn_k``."""

from __future__ import annotations

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


@hookimpl
def register_evaluators(register) -> None:  # type: ignore[no-untyped-def]
    register(KNN)
