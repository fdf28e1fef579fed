"""The ``paper`` protocol: each method as its paper and its official code trained it.

Where the SimVAE paper (Bizeul, Schölkopf & Allen, appendix A.7) is silent, its official code
(github alicebizeul/simvae at c7368de; read and run, not copied: it has no licence) decides.
``docs/protocols.md`` tables every setting beside the ``uniform`` one, with its source (paper section,
or official file and line). Data sets add what is theirs (``DatasetPlugin.paper_methods``: MNIST
binarised at 0.5).
"""

from __future__ import annotations

import math

from sslbench import hookimpl
from sslbench.sdk.protocol import ProtocolPreset

#: the official SimVAE code divides its summed likelihood by exp(log_var_x), log_var_x = -4.6
#: (``main.py`` option ``-v``; ``src/model/models.py`` ``BaseVAE.recon_and_entropy``)
OFFICIAL_LOG_VAR_X = -4.6


class Paper(ProtocolPreset):
    name = "paper"
    description = "each method as its paper and official code trained it (SimVAE: 128 views per step, the official likelihood and optimiser)"
    #: the VAE family as the official SimVAE code trains it (Adam lr 8e-5 and eps 1e-4, the loss summed
    #: over the batch), SimVAE's batch of 128 *views* and its N(0, I) prior on the views' mean, VICReg
    #: at the SimVAE paper's lr 1e-4
    methods = {
        "generative": {"lr": 8e-5, "adam_eps": 1e-4, "loss_reduction": "sum"},
        "simvae": {"batch_unit": "views", "mean_prior": True},
        "vicreg": {"lr": 1e-4},
    }
    #: the probes and the GMM as the paper's appendix A.7.5 (the official code: probe lr 3e-4)
    evaluators = {
        "linear": {"epochs": 200, "batch_size": 128, "lr": 3e-4},
        "mlp": {"epochs": 200, "batch_size": 128, "lr": 3e-4},
        "gmm": {"n_init": 200},
    }
    #: grey images: a Bernoulli (BCE) times exp(4.6), and the MLP's layers in the official code's order
    #: (its encoder runs ``m_dims[::-1]``: 784-2000-500-500-z, decoder z-500-500-2000-784); colour
    #: images: a Gaussian of variance exp(-4.6)
    by_architecture = {
        "mlp": {"generative": {"likelihood": "bernoulli", "nll_weight": math.exp(-OFFICIAL_LOG_VAR_X)}, "arch_options": {"hidden": [2000, 500, 500]}},
        "resnet": {"generative": {"likelihood": "gaussian", "likelihood_var": math.exp(OFFICIAL_LOG_VAR_X)}},
    }


@hookimpl
def register_protocols(register) -> None:  # type: ignore[no-untyped-def]
    register(Paper)
