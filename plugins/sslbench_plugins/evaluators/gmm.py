"""Gaussian-mixture clustering of frozen representations (SimVAE paper, A.7.5).

scikit-learn's ``GaussianMixture`` with full covariances and k = number of classes components is
fitted (EM, ``n_init`` k-means initialisations, default 20 as the official SimVAE code; the best
likelihood kept) on the standardised train representations -- no labels involved, so the
validation/test selection rule does not apply -- and assigns each test image to a component.
Scores on the labelled test images: ``gmm_acc``, the clustering accuracy under the best one-to-one
matching of components to classes (Hungarian algorithm); ``gmm_ari`` and ``gmm_nmi``, the adjusted
Rand index and normalised mutual information (scikit-learn), which need no matching.
"""

from __future__ import annotations

import numpy as np

from sslbench import hookimpl
from sslbench.sdk.api import EvalInputs, Evaluator, Metric, Param
from sslbench.sdk.evaluation import hungarian_accuracy, standardise


class GMMError(RuntimeError):
    """The mixture could not be fitted; the message says which option to change."""


class GMM(Evaluator):
    name = "gmm"
    description = "Gaussian mixture (full covariance, k = classes): Hungarian-matched accuracy, ARI, NMI"
    params = {
        "n_init": Param(20, "EM runs from different k-means initialisations; the best likelihood is kept (official SimVAE code: 20)", minimum=1),
        "max_iter": Param(200, "EM iterations per run", minimum=1),
        "reg_covar": Param(1e-4, "added to the covariance diagonals (standardised units) for stability", minimum=0.0),
        "fit_samples": Param(0, "fit on a fixed random subset of train of this size (0 = all of train)", minimum=0),
    }
    metrics = (
        Metric("gmm_acc", unit="fraction", higher_is_better=True, role="headline", section="content",
               help="clustering accuracy of the mixture's components, matched one-to-one to classes (Hungarian)"),
        Metric("gmm_ari", unit="score", higher_is_better=True, role="headline", section="content",
               help="adjusted Rand index of components against classes (1 perfect, about 0 chance)"),
        Metric("gmm_nmi", unit="score", higher_is_better=True, role="headline", section="content",
               help="normalised mutual information of components and classes, in [0, 1]"),
    )

    def evaluate(self, inputs: EvalInputs, **options) -> dict[str, float]:  # type: ignore[no-untyped-def]
        from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
        from sklearn.mixture import GaussianMixture

        data = inputs.data
        train_z, test_z = (t.double().cpu().numpy() for t in standardise(inputs.train_z.float(), inputs.test_z.float()))
        rng = np.random.default_rng(inputs.seed)
        n_fit = int(options["fit_samples"])
        if n_fit and n_fit < len(train_z):
            train_z = train_z[rng.choice(len(train_z), n_fit, replace=False)]
        keep = (data.test_y >= 0).cpu().numpy()
        test_y = data.test_y.cpu().numpy()[keep]
        mixture = GaussianMixture(
            n_components=data.num_classes, covariance_type="full", n_init=int(options["n_init"]),
            max_iter=int(options["max_iter"]), reg_covar=float(options["reg_covar"]), random_state=inputs.seed,
        )
        try:
            mixture.fit(train_z)
        except ValueError as exc:  # ill-defined covariances: collapsed or duplicated embeddings
            raise GMMError(
                f"the Gaussian mixture could not be fitted ({exc}); the representations may have collapsed. "
                f"Retry with a larger -p gmm.reg_covar (now {options['reg_covar']})."
            ) from exc
        clusters = mixture.predict(test_z[keep])
        return {
            "gmm_acc": hungarian_accuracy(test_y, clusters),
            "gmm_ari": float(adjusted_rand_score(test_y, clusters)),
            "gmm_nmi": float(normalized_mutual_info_score(test_y, clusters)),
        }


@hookimpl
def register_evaluators(register) -> None:  # type: ignore[no-untyped-def]
    register(GMM)
