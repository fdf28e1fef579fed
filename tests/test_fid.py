"""The fid evaluator: its Fréchet distance against pytorch-fid's, the whole pipeline with a small
random-weight feature network, pytorch-fid's InceptionV3 with random weights, and the errors that say
how to provide the weights. The real Inception weights are never used here."""

from __future__ import annotations

import sys
import urllib.error

import numpy as np
import pytest
import torch
from pytorch_fid.fid_score import calculate_frechet_distance
from torch import nn

from sslbench.sdk.api import BuildContext, DataError, EvalInputs, ImageData, Method
from sslbench.sdk.protocol import MNIST_MLP
from sslbench_plugins.evaluators import fid

SHAPE = (1, 8, 8)


@pytest.fixture(autouse=True)
def _fresh_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fid, "_NETWORKS", {})
    monkeypatch.setattr(fid, "_STATS", {})
    monkeypatch.delenv(fid.WEIGHTS_ENV, raising=False)


def np_stats(feats: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    a = feats.numpy()
    return a.mean(0), np.cov(a, rowvar=False)


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")
@pytest.mark.parametrize("n, d", [(400, 12), (60, 24)])
def test_frechet_distance_matches_pytorch_fid(n: int, d: int) -> None:
    g = torch.Generator().manual_seed(d)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.randn(d, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, d, generator=g, dtype=torch.float64) * 1.5 + 0.3
    ours = fid.frechet_distance(*fid.statistics(x), *fid.statistics(y))
    theirs = calculate_frechet_distance(*np_stats(x), *np_stats(y))
    assert ours == pytest.approx(theirs, rel=1e-6)
    assert fid.frechet_distance(*fid.statistics(x), *fid.statistics(x)) == pytest.approx(0.0, abs=1e-6 * float(x.var(0).sum()))


def test_prepare_repeats_grey_and_quantises_like_image_files() -> None:
    x = torch.tensor([0.0, 0.1001, 0.5, 1.2]).view(1, 1, 2, 2)
    out = fid.prepare(x)
    assert out.shape == (1, 3, 2, 2)
    assert torch.equal(out[:, 0], out[:, 2])
    assert torch.allclose(out.flatten()[:4], torch.tensor([0.0, 26 / 255, 128 / 255, 1.0]))
    with pytest.raises(ValueError, match="grey or RGB"):
        fid.prepare(torch.zeros(1, 2, 4, 4))


class SmallFeatures(nn.Module):
    """A random conv net with pytorch-fid's interface: a list holding (B, F, h, w) features."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 6, 3), nn.Tanh())
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.seen.append(tuple(x.shape))
        return [self.net(x)]


class PixelCode(Method):
    name = "pixel-code"
    family = "generative"

    def __init__(self, ctx: BuildContext, noise: float = 0.0) -> None:
        super().__init__(ctx)
        self.noise = noise

    def loss(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(1)
        return (z.view(-1, *SHAPE) + self.noise * torch.randn(z.shape[0], *SHAPE, generator=g)).clamp(0, 1)


def tiny_inputs(noise: float = 0.0) -> EvalInputs:
    g = torch.Generator().manual_seed(0)
    protos = torch.rand(3, *SHAPE, generator=g)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % 3
        x = (protos[y] + 0.1 * torch.randn(n, *SHAPE, generator=g)).clamp(0, 1)
        return (x * 255).round().to(torch.uint8), y

    (train_x, train_y), (test_x, test_y) = split(150), split(60)
    data = ImageData(name="protos", train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y)
    ctx = BuildContext(protocol=MNIST_MLP, image_shape=SHAPE, num_train=150, num_classes=3, device=torch.device("cpu"))
    method = PixelCode(ctx, noise=noise)
    return EvalInputs(
        train_z=method.embed(train_x.float() / 255), test_z=method.embed(test_x.float() / 255), data=data,
        method=method, device=torch.device("cpu"), seed=0, selection="val", val_index=torch.arange(10),
    )


OPTIONS = {"num_images": 40, "weights": "", "batch_size": 16, "precision": "fp32"}


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")
def test_fid_pipeline_with_a_small_random_network(monkeypatch: pytest.MonkeyPatch) -> None:
    net = SmallFeatures()
    monkeypatch.setattr(fid, "load_feature_network", lambda weights, device: net)
    inputs = tiny_inputs(noise=0.2)
    out = fid.FID().evaluate(inputs, **OPTIONS)
    assert set(out) == {"fid_recon", "fid_samples"}
    assert all(shape[1] == 3 for shape in net.seen)  # grey repeated to RGB

    # the same numbers, computed independently with pytorch-fid's distance
    idx = fid.reference_index(60, 40)
    assert len(set(idx.tolist())) == 40
    real = inputs.data.test_x[idx].float() / 255
    recon = inputs.method.decode(inputs.test_z[idx])

    def feats(x: torch.Tensor) -> torch.Tensor:
        x = (x.expand(-1, 3, -1, -1) * 255).round() / 255
        with torch.no_grad():
            return net(x)[0].mean((2, 3)).double()

    expected = calculate_frechet_distance(*np_stats(feats(recon)), *np_stats(feats(real)))
    assert out["fid_recon"] == pytest.approx(expected, rel=1e-5)
    assert out["fid_recon"] > 0 and out["fid_samples"] > 0


def test_fid_is_zero_for_perfect_reconstructions_and_grows_with_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    net = SmallFeatures()
    monkeypatch.setattr(fid, "load_feature_network", lambda weights, device: net)
    perfect = fid.FID().evaluate(tiny_inputs(noise=0.0), **OPTIONS)["fid_recon"]
    slightly = fid.FID().evaluate(tiny_inputs(noise=0.05), **OPTIONS)["fid_recon"]
    very = fid.FID().evaluate(tiny_inputs(noise=0.5), **OPTIONS)["fid_recon"]
    assert abs(perfect) < 1e-6
    assert 0 < slightly < very


def test_fid_skips_samples_without_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fid, "load_feature_network", lambda weights, device: SmallFeatures())
    inputs = tiny_inputs()
    inputs.data.train_y = torch.zeros_like(inputs.data.train_y)
    inputs.data.test_y = torch.zeros_like(inputs.data.test_y)
    assert set(fid.FID().evaluate(inputs, **OPTIONS)) == {"fid_recon"}


def _random_state_dict(*args, **kwargs):  # type: ignore[no-untyped-def]
    """Stands in for pytorch-fid's download: the state dict of the network being built (random)."""
    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("inception")
        if isinstance(candidate, nn.Module):
            return candidate.state_dict()
        frame = frame.f_back
    raise AssertionError("not called from pytorch-fid's fid_inception_v3")


def test_pytorch_fid_inception_with_random_weights_gives_2048_features(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytorch_fid import inception

    monkeypatch.setattr(inception, "load_state_dict_from_url", _random_state_dict)
    net = fid.load_feature_network("", torch.device("cpu"))
    assert fid.load_feature_network("", torch.device("cpu")) is net  # cached
    assert not net.training
    f = fid.features(net, torch.rand(2, *SHAPE), torch.device("cpu"), batch_size=2, precision="fp32")
    assert f.shape == (2, 2048) and f.dtype == torch.float64 and torch.isfinite(f).all()


def test_missing_weights_file_says_how_to_provide_it(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(fid.WEIGHTS_ENV, str(tmp_path / "nope.pth"))
    with pytest.raises(DataError, match=f"does not exist.*{fid.WEIGHTS_ENV}"):
        fid.load_feature_network("", torch.device("cpu"))
    with pytest.raises(DataError, match="from the fid evaluator's `weights` option"):
        fid.load_feature_network(str(tmp_path / "other.pth"), torch.device("cpu"))


def test_wrong_weights_file_is_reported(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(DataError, match="does not fit pytorch-fid's FID InceptionV3"):
        fid.load_feature_network(str(bad), torch.device("cpu"))
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(DataError, match="not a readable PyTorch state dict"):
        fid.load_feature_network(str(junk), torch.device("cpu"))


def test_no_weights_and_no_internet_says_how_to_provide_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytorch_fid import inception

    def offline(url, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(inception, "load_state_dict_from_url", offline)
    with pytest.raises(DataError, match=f"could not get the FID Inception weights.*{fid.WEIGHTS_ENV}"):
        fid.load_feature_network("", torch.device("cpu"))
