"""MLP probe: one hidden ReLU layer on frozen, standardised representations (SimVAE paper, A.7.5).

Trained with Adam and cross-entropy on the cached embeddings (on the device); the reported epoch is
chosen on the validation split carved from train (default; the probe is then fitted on the rest of
train) or on the test set (``--select test``; the probe is then fitted on all of train). With more
than five classes the top-5 accuracy at the chosen epoch is reported too. Samples labelled -1 (no class) are left out.
"""

from __future__ import annotations

from torch import nn

from sslbench import hookimpl
from sslbench.sdk.api import EvalInputs, Evaluator, Param
from sslbench.sdk.evaluation import classification_probe, classification_probe_metrics


class MLPProbe(Evaluator):
    name = "mlp"
    description = "MLP probe accuracy (one hidden ReLU layer on frozen embeddings), top-5 too beyond 5 classes"
    params = {
        "hidden": Param(512, "width of the hidden layer", minimum=1),
        "epochs": Param(100, "probe training epochs", minimum=1),
        "lr": Param(1e-3, "Adam learning rate", minimum=0.0),
        "weight_decay": Param(1e-5, "L2 penalty", minimum=0.0),
        "batch_size": Param(256, "probe batch size", minimum=1),
    }
    metrics = classification_probe_metrics("mlp", "MLP probe")

    def evaluate(self, inputs: EvalInputs, **options) -> dict[str, float]:  # type: ignore[no-untyped-def]
        hidden = int(options["hidden"])
        head = nn.Sequential(
            nn.Linear(inputs.train_z.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, inputs.data.num_classes)
        )
        return classification_probe(inputs, head, "mlp", options)


@hookimpl
def register_evaluators(register) -> None:  # type: ignore[no-untyped-def]
    register(MLPProbe)
