"""MoCo v2 (He et al. 2020, "Momentum Contrast for Unsupervised Visual Representation Learning";
Chen et al. 2020, "Improved Baselines with Momentum Contrastive Learning").

A query encoder f_q (the protocol's encoder followed by an MLP head) is trained with InfoNCE against
one positive key and a queue of K negative keys; the key encoder f_k is a momentum copy of f_q that
receives no gradient:

* InfoNCE (MoCo eq. 1): ``L = -log exp(q.k+ / T) / (exp(q.k+ / T) + sum_i exp(q.k_i / T))`` with q
  and k l2-normalised, k+ = f_k(other view), k_i the queue;
* momentum update (MoCo eq. 2), after every optimiser step: ``theta_k <- m theta_k + (1 - m) theta_q``;
* the keys of the batch are then enqueued and the oldest ones dequeued (a ring buffer).

Published v2 values: temperature 0.2, MLP head (2048 hidden, ReLU, 128 out), K = 65536, m = 0.999
(ImageNet, 1.28M images, batch 256). Choices made here and why:

* ``momentum`` defaults to **0.99**, not 0.999: the protocol's data sets have 50-60k images, i.e.
  about 470 steps per epoch at batch 128, and with m = 0.999 the key encoder would average over about
  1,000 steps (two epochs), lagging far behind a query encoder trained with Adam; 0.99 (a 100-step
  horizon) is the value CIFAR-scale reproductions of MoCo (e.g. solo-learn) start from. ``-p moco.momentum=0.999``
  gives the ImageNet value.
* ``queue_size`` defaults to **4096**, MoCo's CIFAR-10 recipe (the CIFAR-10 demo of the official
  repository, facebookresearch/moco ``colab/moco_cifar10_demo.ipynb``: K = 4096, m = 0.99, batch
  512, 50k images), not the ImageNet 65536. A queue larger than the data set is allowed (digits has
  1,347 train images): its first keys are random unit vectors, and once more keys than images have
  been enqueued it holds older keys of every image, so an anchor also meets keys of its own image
  from earlier steps among its negatives. ``-p moco.queue_size=0`` sizes it to the data set instead:
  ``min(65536, num_train rounded down to a multiple of the batch size)``, at least one batch.
* The head is Linear(latent, 2048)-BN-ReLU-Linear(2048, 128) (the protocol's ``projection_head``,
  as SimCLR's here), i.e. the v2 head plus a BatchNorm. The v2 head has none because ResNet-50 ends
  in BN; the protocol's MLP encoder does not, and without it the head's initial outputs for all images
  are nearly parallel (cosine about 0.999 on digits): the first keys fill the queue with one
  direction and the loss sits at log(K + 1) with knn accuracy below the random encoder's.
* Shuffling BN (MoCo sec. 3.3): on several GPUs the keys' BatchNorm statistics are computed on a
  shuffled sub-batch so they cannot leak which key is the positive. On one device this is emulated
  with ``bn_groups`` sub-batches: queries go through encoder and head in ``bn_groups`` consecutive
  chunks, keys in ``bn_groups`` chunks of a random permutation (skipped if neither the encoder nor
  the head had BatchNorm).
* ``symmetric`` (off by default, as in v2) adds the loss with the views' roles swapped (as MoCo v3
  does) and enqueues both views' keys.

The representation is the query encoder's output, before the head.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from sslbench import hookimpl
from sslbench.sdk.api import BuildContext, Method, Param, ParamError
from sslbench.sdk.nets import projection_head

MAX_QUEUE = 65536
#: the default K: MoCo's CIFAR-10 recipe
DEFAULT_QUEUE = 4096


def default_queue_size(num_train: int, batch_size: int) -> int:
    """The queue size "sized to the data set": min(65536, num_train rounded down to a multiple of the
    batch size), and at least one batch."""
    rounded = (num_train // batch_size) * batch_size
    return min(MAX_QUEUE, max(batch_size, rounded))


def _has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


class MoCo(Method):
    name = "moco"
    family = "discriminative"
    description = "MoCo v2: momentum key encoder, queue of negatives, InfoNCE, MLP head"
    view_major = True  # each view goes through the networks on its own
    params = {
        "temperature": Param(0.2, "InfoNCE temperature (MoCo v2: 0.2)", minimum=1e-4),
        "momentum": Param(0.99, "key encoder momentum m (MoCo v2 on ImageNet: 0.999; 0.99 suits 50-60k images)", minimum=0.0),
        "queue_size": Param(DEFAULT_QUEUE, "number of negative keys K (MoCo's CIFAR-10 recipe: 4096); 0 = min(65536, num_train rounded down to a multiple of the batch)", minimum=0),
        "head_hidden": Param(2048, "MLP head hidden width (MoCo v2: 2048)", minimum=1),
        "head_dim": Param(128, "MLP head output size (MoCo v2: 128)", minimum=1),
        "bn_groups": Param(2, "sub-batches emulating MoCo's shuffling BN on one device (1 = off)", minimum=1),
        "symmetric": Param(False, "also use the loss with the two views swapped (MoCo v3 style)"),
    }

    def __init__(self, ctx: BuildContext, **params) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx, **params)
        hp = self.hparams
        if not 0.0 <= float(hp["momentum"]) <= 1.0:
            raise ParamError(f"moco.momentum={hp['momentum']} must lie in [0, 1]; 0.99 (default) or 0.999 (MoCo v2 on ImageNet) are usual")
        self.encoder = ctx.encoder()
        self.head = projection_head(ctx.protocol.latent_dim, int(hp["head_hidden"]), int(hp["head_dim"]))
        self.key_encoder = copy.deepcopy(self.encoder)
        self.key_head = copy.deepcopy(self.head)
        for p in self._key_parameters():
            p.requires_grad_(False)
        k = int(hp["queue_size"]) or default_queue_size(ctx.num_train, ctx.protocol.batch_size)
        self.queue_size = k
        # the queue of negatives is a buffer: it moves with .to(device) and is saved in checkpoints
        self.register_buffer("queue", F.normalize(torch.randn(k, int(hp["head_dim"])), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self._pending_keys: torch.Tensor | None = None
        self._shuffle_bn = (_has_batchnorm(self.encoder) or _has_batchnorm(self.head)) and int(hp["bn_groups"]) > 1

    # -- parameters ------------------------------------------------------------------------
    def _query_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder.parameters(), *self.head.parameters()]

    def _key_parameters(self) -> list[nn.Parameter]:
        return [*self.key_encoder.parameters(), *self.key_head.parameters()]

    # -- forward passes --------------------------------------------------------------------
    def _groups(self, n: int) -> int:
        """Sub-batches for shuffling BN: ``bn_groups``, but each of at least 2 images (BN needs 2)."""
        return min(int(self.hparams["bn_groups"]), n // 2) if self._shuffle_bn else 1

    def _queries(self, x: torch.Tensor) -> torch.Tensor:
        groups = self._groups(x.shape[0])
        if groups > 1:
            y = torch.cat([self.head(self.encoder(c)) for c in x.chunk(groups)])
        else:
            y = self.head(self.encoder(x))
        return F.normalize(y, dim=1)

    @torch.no_grad()
    def _keys(self, x: torch.Tensor) -> torch.Tensor:
        groups = self._groups(x.shape[0])
        if groups > 1:
            perm = torch.randperm(x.shape[0], device=x.device)
            y = torch.cat([self.key_head(self.key_encoder(c)) for c in x[perm].chunk(groups)])
            y = y[torch.argsort(perm)]
        else:
            y = self.key_head(self.key_encoder(x))
        return F.normalize(y, dim=1).float()

    def info_nce(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """MoCo eq. 1: cross-entropy with the positive logit q.k+ in column 0 and the queue after it.

        The logits over up to 65,536 negatives are computed in fp32 even under bf16 autocast (in
        bf16 the positive would be lost among the negatives' rounding errors)."""
        with torch.autocast(device_type=q.device.type, enabled=False):
            q = q.float()
            positive = (q * k.float()).sum(1, keepdim=True)
            negative = q @ self.queue.t().float()
            logits = torch.cat([positive, negative], 1) / float(self.hparams["temperature"])
            target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
            return F.cross_entropy(logits, target)

    def loss(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        x1, x2 = views[:, 0], views[:, 1]
        q1 = self._queries(x1)
        k2 = self._keys(x2)
        contrastive = self.info_nce(q1, k2)
        pending = [k2]
        if self.hparams["symmetric"]:
            q2 = self._queries(x2)
            k1 = self._keys(x1)
            contrastive = 0.5 * (contrastive + self.info_nce(q2, k1))
            pending.append(k1)
        self._pending_keys = torch.cat(pending)
        return {"loss": contrastive, "contrastive": contrastive}

    # -- after each optimiser step: momentum update, then enqueue ------------------------------
    @torch.no_grad()
    def momentum_update(self) -> None:
        """MoCo eq. 2: theta_k <- m * theta_k + (1 - m) * theta_q, for the encoder and the head, in
        two multi-tensor kernels (the same two operations per parameter as a loop, so the same numbers)."""
        m = float(self.hparams["momentum"])
        keys = [p.data for p in self._key_parameters()]
        torch._foreach_mul_(keys, m)
        torch._foreach_add_(keys, [p.detach() for p in self._query_parameters()], alpha=1.0 - m)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` into the ring buffer at the pointer (wrapping around) and advance it; with
        more keys than the queue holds, only the last ``queue_size`` are kept."""
        k = self.queue_size
        keys = keys.detach()[-k:].to(self.queue.dtype)
        n = keys.shape[0]
        idx = (self.queue_ptr + torch.arange(n, device=self.queue.device)) % k
        self.queue[idx] = keys
        self.queue_ptr.copy_((self.queue_ptr + n) % k)

    def after_step(self) -> None:
        self.momentum_update()
        if self._pending_keys is not None:
            self.enqueue(self._pending_keys)
            self._pending_keys = None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


@hookimpl
def register_methods(register) -> None:  # type: ignore[no-untyped-def]
    register(MoCo)
