"""Linear probe: multinomial logistic regression on frozen, standardised representations.

Trained with Adam on the cached embeddings (on the device); the reported epoch is chosen on the
validation split (default) or on the test set (``--select test``). With ``--select val`` the probe is
fitted on train minus the validation split. With more than five classes the top-5 accuracy at the
chosen epoch is reported as ``linear_top5``. Samples labelled -1 (no class) are left out."""

from __future__ import annotations

from torch import nn

from sslbench import hookimpl
from sslbench.api import EvalInputs, Evaluator, Param
from sslbench.evaluation import curve_at, labelled, probe_curves, standardise


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
        lab = labelled(inputs.train_z, data.train_y, inputs.test_z, data.test_y, inputs.fit_index, inputs.val_index)
        fit, val = lab.fit_index, lab.val_index
        fit_z, val_z, test_z = standardise(lab.train_z[fit], lab.train_z[val], lab.test_z)
        head = nn.Linear(fit_z.shape[1], data.num_classes).to(fit_z.device)
        topks = (1, 5) if data.num_classes > 5 else (1,)
        curves = probe_curves(
            head, fit_z, lab.train_y[fit], val_z, lab.train_y[val], test_z, lab.test_y,
            epochs=int(options["epochs"]), lr=float(options["lr"]), weight_decay=float(options["weight_decay"]),
            batch_size=int(options["batch_size"]), seed=inputs.seed, topks=topks,
        )
        epoch, acc = curves[1].select(inputs.selection)
        result = {"linear_acc": acc, "linear_epoch": float(epoch)}
        if 5 in curves:
            result["linear_top5"] = curve_at(curves[5], epoch)
        return result


@hookimpl
def register_evaluators(register) -> None:  # type: ignore[no-untyped-def]
    register(LinearProbe)
