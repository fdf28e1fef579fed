"""Linear probe: multinomial logistic regression on frozen, standardised representations.

Trained with Adam on the cached embeddings (on the device); the reported epoch is chosen on the
validation split (default) or on the test set (``--select test``). With ``--select val`` the probe is
fitted on train minus the validation split, with ``--select test`` on all of train. With more than five classes the top-5 accuracy at the
chosen epoch is reported as ``linear_top5``. Samples labelled -1 (no class) are left out."""

from __future__ import annotations

from torch import nn

from sslbench import hookimpl
from sslbench.sdk.api import EvalInputs, Evaluator, Param
from sslbench.sdk.evaluation import classification_probe, classification_probe_metrics


class LinearProbe(Evaluator):
    name = "linear"
    description = "linear probe accuracy (logistic regression on frozen embeddings)"
    params = {
        "epochs": Param(100, "probe training epochs", minimum=1),
        "lr": Param(1e-2, "Adam learning rate", minimum=0.0),
        "weight_decay": Param(1e-5, "L2 penalty", minimum=0.0),
        "batch_size": Param(256, "probe batch size", minimum=1),
    }
    metrics = classification_probe_metrics("linear", "linear probe")

    def evaluate(self, inputs: EvalInputs, **options) -> dict[str, float]:  # type: ignore[no-untyped-def]
        head = nn.Linear(inputs.train_z.shape[1], inputs.data.num_classes)
        return classification_probe(inputs, head, "linear", options)


@hookimpl
def register_evaluators(register) -> None:  # type: ignore[no-untyped-def]
    register(LinearProbe)
