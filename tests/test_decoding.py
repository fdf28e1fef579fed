"""The decoder trained on frozen representations (sslbench.engine.decoding).

On scikit-learn's digits (embedded, 8x8) with a tiny MLP decoder: an informative representation gets
well below the mean-image MSE on held-out images, a representation that carries nothing about the
image does not; training is seeded, cached in the run folder and reused only when its settings match.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sslbench.engine import decoding
from sslbench.sdk.api import BuildContext, EvalInputs, ImageData
from sslbench.sdk.nets import MLP
from sslbench.sdk.protocol import DIGITS_MLP
from sslbench_plugins.datasets.digits import Digits
from sslbench_plugins.methods.simclr import SimCLR

PROTOCOL = DIGITS_MLP.replace(name="tiny-digits", latent_dim=8, batch_size=64, arch_options={"hidden": [64, 64]})


@pytest.fixture(scope="module")
def digits() -> ImageData:
    return Digits().load(None)


def make_inputs(data: ImageData, train_z: torch.Tensor, test_z: torch.Tensor, run_dir: Path | None = None, seed: int = 0) -> EvalInputs:
    ctx = BuildContext(
        protocol=PROTOCOL, image_shape=data.image_shape, num_train=data.train_x.shape[0], num_classes=10,
        device=torch.device("cpu"), architectures={"mlp": MLP},
    )
    method = SimCLR(ctx, temperature=0.7, proj_hidden=8, proj_dim=4, lr=0.0)
    return EvalInputs(
        train_z=train_z, test_z=test_z, data=data, method=method, device=torch.device("cpu"), seed=seed,
        selection="val", val_index=torch.arange(10), run_dir=str(run_dir) if run_dir else None,
        decoder_factory=decoding.train_frozen_decoder,  # what the engine's runner injects
    )


def projection(data: ImageData, dim: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """An informative representation: a fixed random linear projection of the pixels."""
    w = torch.randn(64, dim, generator=torch.Generator().manual_seed(0))
    return data.train_x.flatten(1).float() @ w / 255, data.test_x.flatten(1).float() @ w / 255


def test_frozen_decoder_beats_the_mean_image(digits: ImageData) -> None:
    train_z, test_z = projection(digits)
    dec = decoding.train_frozen_decoder(make_inputs(digits, train_z, test_z), epochs=20)
    test_x = digits.test_x.float() / 255
    mean_image = (digits.train_x.float() / 255).mean(0, keepdim=True)
    trivial = F.mse_loss(mean_image.expand_as(test_x), test_x).item()
    recon = dec(test_z)
    assert recon.shape == test_x.shape and recon.min() >= 0 and recon.max() <= 1
    assert F.mse_loss(recon, test_x).item() < 0.65 * trivial
    assert dec.train_mse < trivial and dec.epochs == 20


def test_frozen_decoder_cannot_invent_what_the_representation_lacks(digits: ImageData) -> None:
    g = torch.Generator().manual_seed(5)
    noise_train, noise_test = torch.randn(digits.train_x.shape[0], 8, generator=g), torch.randn(digits.test_x.shape[0], 8, generator=g)
    dec = decoding.train_frozen_decoder(make_inputs(digits, noise_train, noise_test), epochs=20)
    test_x = digits.test_x.float() / 255
    mean_image = (digits.train_x.float() / 255).mean(0, keepdim=True)
    trivial = F.mse_loss(mean_image.expand_as(test_x), test_x).item()
    assert F.mse_loss(dec(noise_test), test_x).item() > 0.9 * trivial


def test_training_is_seeded_and_leaves_the_global_rng_alone(digits: ImageData) -> None:
    train_z, test_z = projection(digits)
    inputs = make_inputs(digits, train_z, test_z, seed=3)
    state = torch.get_rng_state()
    a = decoding.train_frozen_decoder(inputs, epochs=1)
    assert torch.equal(torch.get_rng_state(), state)
    b = decoding.train_frozen_decoder(make_inputs(digits, train_z, test_z, seed=3), epochs=1)
    c = decoding.train_frozen_decoder(make_inputs(digits, train_z, test_z, seed=4), epochs=1)
    assert torch.equal(a(test_z[:5]), b(test_z[:5]))
    assert not torch.equal(a(test_z[:5]), c(test_z[:5]))


def test_decoder_is_saved_in_the_run_dir_and_reused(digits: ImageData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train_z, test_z = projection(digits)
    first = decoding.train_frozen_decoder(make_inputs(digits, train_z, test_z, tmp_path), epochs=2)
    saved = tmp_path / decoding.CACHE_NAME
    assert saved.is_file() and not list(tmp_path.glob("*.part"))

    def no_training(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the cached decoder should have been reused")

    monkeypatch.setattr(decoding.torch.optim, "Adam", no_training)
    again = decoding.train_frozen_decoder(make_inputs(digits, train_z, test_z, tmp_path), epochs=2)
    assert torch.equal(first(test_z[:7]), again(test_z[:7]))
    assert again.train_mse == first.train_mse
    # different settings (epochs, seed) are not served from the cache
    with pytest.raises(AssertionError, match="reused"):
        decoding.train_frozen_decoder(make_inputs(digits, train_z, test_z, tmp_path), epochs=3)
    with pytest.raises(AssertionError, match="reused"):
        decoding.train_frozen_decoder(make_inputs(digits, train_z, test_z, tmp_path, seed=1), epochs=2)


def test_a_corrupt_cache_is_retrained_and_replaced(digits: ImageData, tmp_path: Path) -> None:
    train_z, test_z = projection(digits)
    (tmp_path / decoding.CACHE_NAME).write_bytes(b"not a checkpoint")
    dec = decoding.train_frozen_decoder(make_inputs(digits, train_z, test_z, tmp_path), epochs=1)
    blob = torch.load(tmp_path / decoding.CACHE_NAME, weights_only=True)
    assert blob["settings"]["epochs"] == 1 and dec.train_mse == blob["train_mse"]


def test_eval_inputs_decoder_trains_one_for_a_method_without_decode(digits: ImageData, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(decoding.EPOCHS_ENV, "1")
    train_z, test_z = projection(digits)
    inputs = make_inputs(digits, train_z, test_z)
    assert not inputs.has_own_decoder
    dec = inputs.decoder()
    assert isinstance(dec, decoding.FrozenDecoder) and dec.epochs == 1
    assert inputs.decoder() is dec  # trained once per run, shared by every evaluator
    assert dec(test_z[:3]).shape == (3, 1, 8, 8)


def test_epochs_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(decoding.EPOCHS_ENV, raising=False)
    assert decoding.decoder_epochs() == decoding.DEFAULT_EPOCHS
    monkeypatch.setenv(decoding.EPOCHS_ENV, "3")
    assert decoding.decoder_epochs() == 3
    for bad in ("zero", "0", "-2", "1.5"):
        monkeypatch.setenv(decoding.EPOCHS_ENV, bad)
        with pytest.raises(ValueError, match=decoding.EPOCHS_ENV):
            decoding.decoder_epochs()


def test_bad_representations_are_refused_with_a_reason(digits: ImageData) -> None:
    train_z, test_z = projection(digits)
    broken = train_z.clone()
    broken[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        decoding.train_frozen_decoder(make_inputs(digits, broken, test_z), epochs=1)
    with pytest.raises(ValueError, match="one row per train image"):
        decoding.train_frozen_decoder(make_inputs(digits, train_z[:10], test_z), epochs=1)
    dec = decoding.train_frozen_decoder(make_inputs(digits, train_z, test_z), epochs=1)
    with pytest.raises(ValueError, match=r"\(N, 8\)"):
        dec(torch.zeros(2, 5))


def test_eval_inputs_without_a_decoder_factory_say_so(digits: ImageData) -> None:
    """The contract trains no network itself: without the engine's factory, asking is a clear error."""
    train_z, test_z = projection(digits)
    inputs = make_inputs(digits, train_z, test_z)
    inputs.decoder_factory = None
    with pytest.raises(RuntimeError, match="no decoder of its own.*decoder_factory"):
        inputs.decoder()
