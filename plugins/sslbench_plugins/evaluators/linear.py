"""Linear probe: multinomial logistic regression on frozen, standardised representations.

Trained with Adam on the cached embeddings (on the device); the reported epoch is chosen on the
validation split (default) or on the test set (``--select test``). With ``--select val`` the probe is
fitted on train minus the validation split."""

from __future__ import annotations

from torch import nn

from sslbench import hookimpl
from sslbench.api import EvalInputs, Evaluator, Param
from sslbench.evaluation import probe_curve, standardise


class LinearProbe(Evaluator):
    name = "linear"
    description = "linear probe accuracy (logistic regression on frozen embeddings)"
    params = {
        "epochs": Param(100, "probe training epochs", minimum=1),
        "lr": Param(1e-2, "Adam learning rate", minimum=0.0),
        "weight_decay": Param(1e-5, "L2 penalty", minimum=0.0),
        "batch_size": Param(256, "probe batch size", minimum=1),
    }

    def evaluate(self, inputs: EvalInputs, **options) -> dict[str, float]:  # type: ignore[no-untyped-def]
        data = inputs.data
        fit, val = inputs.fit_index, inputs.val_index
        fit_z, val_z, test_z = standardise(inputs.train_z[fit], inputs.train_z[val], inputs.test_z)
        head = nn.Linear(fit_z.shape[1], data.num_classes).to(fit_z.device)
        curve = probe_curve(
            head, fit_z, data.train_y[fit], val_z, data.train_y[val], test_z, data.test_y,
            epochs=int(options["epochs"]), lr=float(options["lr"]), weight_decay=float(options["weight_decay"]),
            batch_size=int(options["batch_size"]), seed=inputs.seed,
        )
        epoch, acc = curve.select(inputs.selection)
        return {"linear_acc": acc, "linear_epoch": float(epoch)}


@hookimpl
def register_evaluators(register) -> None:  # type: ignore[no-untyped-def]
    register(LinearProbe)
