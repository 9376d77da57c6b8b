"""The two AlexNets: sizes, shapes, tower connectivity, initialisation, ablations, torchvision parity."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
import torchvision

from alexgui.config import ModelConfig
from alexgui.engine.model.networks import build_model
from alexgui.engine.model.paper import PaperAlexNet
from alexgui.engine.model.summary import format_summary, summary_rows
from alexgui.engine.model.torchvision_alexnet import (
    TorchvisionAlexNet,
    WeightsError,
    load_torchvision_weights,
)

Acts = dict[str, torch.Tensor]

PAPER_SHAPES = {
    "conv1": (96, 55, 55),
    "norm1": (96, 55, 55),
    "pool1": (96, 27, 27),
    "conv2": (256, 27, 27),
    "norm2": (256, 27, 27),
    "pool2": (256, 13, 13),
    "conv3": (384, 13, 13),
    "conv4": (384, 13, 13),
    "conv5": (256, 13, 13),
    "pool5": (256, 6, 6),
    "fc6": (4096,),
    "fc7": (4096,),
    "fc8": (1000,),
}
TORCHVISION_SHAPES = {
    "conv1": (64, 55, 55),
    "pool1": (64, 27, 27),
    "conv2": (192, 27, 27),
    "pool2": (192, 13, 13),
    "conv3": (384, 13, 13),
    "conv4": (256, 13, 13),
    "conv5": (256, 13, 13),
    "pool5": (256, 6, 6),
    "fc6": (4096,),
    "fc7": (4096,),
    "fc8": (1000,),
}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def paper() -> PaperAlexNet:
    torch.manual_seed(0)
    return PaperAlexNet().eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1)) * 50.0


@pytest.fixture(scope="module")
def paper_acts(paper: PaperAlexNet, image: torch.Tensor) -> Acts:
    with torch.no_grad():
        return paper.activations(image, paper.layer_names())


def ablation(paper: PaperAlexNet, **changes: object) -> PaperAlexNet:
    """A paper model with one switch changed and the same weights, so any difference is the switch's."""
    model = build_model(dataclasses.replace(ModelConfig(), **changes))
    model.load_state_dict(paper.state_dict())
    return model.eval()


# sizes ------------------------------------------------------------------------------------------


def test_paper_parameter_count(paper: PaperAlexNet) -> None:
    assert n_params(paper) == 60_965_224


def test_torchvision_parameter_count_matches_torchvision() -> None:
    model = TorchvisionAlexNet()
    assert n_params(model) == 61_100_840 == n_params(torchvision.models.alexnet(weights=None))


def test_parameter_counts_for_ten_classes() -> None:
    # Only fc8 depends on the class count: 4096 * N + N.
    assert n_params(build_model(ModelConfig(num_classes=10))) == 60_965_224 - 4_097_000 + 40_970
    tv = build_model(ModelConfig(arch="torchvision", num_classes=10))
    assert n_params(tv) == 61_100_840 - 4_097_000 + 40_970


def test_paper_towers_are_explicit_halves(paper: PaperAlexNet) -> None:
    assert len(paper.towers) == 2
    want = {"conv1": 48, "conv2": 128, "conv3": 192, "conv4": 192, "conv5": 128, "fc6": 2048, "fc7": 2048}
    for tower in paper.towers:
        assert {name: getattr(tower, name).weight.shape[0] for name in want} == want
    assert paper.fc8.in_features == 4096


# shapes and activations -------------------------------------------------------------------------


def test_paper_activation_shapes_at_224(paper: PaperAlexNet, paper_acts: Acts) -> None:
    assert paper.layer_names() == list(PAPER_SHAPES)
    assert {name: tuple(a.shape[1:]) for name, a in paper_acts.items()} == PAPER_SHAPES


def test_torchvision_activation_shapes_at_224(image: torch.Tensor) -> None:
    model = TorchvisionAlexNet().eval()
    assert model.layer_names() == list(TORCHVISION_SHAPES)
    with torch.no_grad():
        acts = model.activations(image, ["fc8", "conv1", "pool5"])
        assert list(acts) == ["fc8", "conv1", "pool5"]  # in the order asked
        assert {n: tuple(a.shape[1:]) for n, a in acts.items()} == {n: TORCHVISION_SHAPES[n] for n in acts}
        torch.testing.assert_close(acts["fc8"], model(image))


def test_activations_agree_with_forward(paper: PaperAlexNet, paper_acts: Acts, image: torch.Tensor) -> None:
    with torch.no_grad():
        torch.testing.assert_close(paper_acts["fc8"], paper(image))
        torch.testing.assert_close(paper_acts["fc7"], paper.forward_features(image))
    # conv activations are after ReLU, and pool1 is max-pool 3/2 of norm1.
    assert paper_acts["conv1"].min() >= 0
    torch.testing.assert_close(paper_acts["pool1"], F.max_pool2d(paper_acts["norm1"], 3, 2))


def test_unknown_activation_name_is_refused(paper: PaperAlexNet, image: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="'conv9'.*valid: conv1"):
        paper.activations(image, ["conv1", "conv9"])
    assert paper.activations(image, []) == {}


def test_forward_features_is_4096_non_negative_and_feeds_the_head(paper: PaperAlexNet) -> None:
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        features = paper.forward_features(x)
        assert features.shape == (2, 4096)
        assert features.min() >= 0
        assert features.abs().sum() > 0
        torch.testing.assert_close(paper.forward_head(features), paper(x))


def test_channels_last_gives_the_same_logits(paper: PaperAlexNet, image: torch.Tensor, paper_acts: Acts) -> None:
    model = ablation(paper).to(memory_format=torch.channels_last)
    with torch.no_grad():
        logits = model(image.to(memory_format=torch.channels_last))
    torch.testing.assert_close(logits, paper_acts["fc8"], rtol=1e-4, atol=1e-4)


# tower connectivity -----------------------------------------------------------------------------


def _perturbed_activations(paper: PaperAlexNet, image: torch.Tensor, tower: int) -> Acts:
    def bump(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return output + 5.0 * torch.randn_like(output)

    handle = paper.towers[tower].conv1.register_forward_hook(bump)
    try:
        with torch.no_grad():
            return paper.activations(image, ["conv2", "conv3"])
    finally:
        handle.remove()


@pytest.mark.parametrize("tower", [0, 1])
def test_conv2_sees_only_its_own_tower_and_conv3_sees_both(
    paper: PaperAlexNet, paper_acts: Acts, image: torch.Tensor, tower: int
) -> None:
    changed = _perturbed_activations(paper, image, tower)
    halves = {"conv2": 128, "conv3": 192}
    for layer, half in halves.items():
        per_tower = zip(changed[layer].split(half, dim=1), paper_acts[layer].split(half, dim=1), strict=True)
        same = [torch.equal(new, old) for new, old in per_tower]
        if layer == "conv2":
            assert same == [t != tower for t in (0, 1)]  # only the perturbed tower's conv2 moves
        else:
            assert same == [False, False]  # conv3 of both towers reads both towers' conv2


def test_cross_tower_layers_read_both_towers(paper: PaperAlexNet) -> None:
    for tower in paper.towers:
        assert tower.conv3.in_channels == 256  # 2 x 128 (both towers' conv2)
        assert tower.conv4.in_channels == 192 and tower.conv5.in_channels == 192  # own tower only
        assert tower.fc6.in_features == 2 * 128 * 6 * 6
        assert tower.fc7.in_features == 2 * 2048


def test_conv2_is_a_grouped_convolution_on_one_device(paper: PaperAlexNet, paper_acts: Acts) -> None:
    # The paper's split equals groups=2 over tower-0-first concatenated weights.
    weight = paper.kernels("conv2")
    bias = torch.cat([t.conv2.bias for t in paper.towers]).detach()
    want = F.relu(F.conv2d(paper_acts["pool1"], weight, bias, padding=2, groups=2))
    torch.testing.assert_close(paper_acts["conv2"], want, rtol=1e-4, atol=1e-4)


# initialisation ---------------------------------------------------------------------------------


def test_paper_initialisation(paper: PaperAlexNet) -> None:
    bias_one = {"conv2", "conv4", "conv5", "fc6", "fc7"}
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        for module in paper.layer_modules(name):
            w = module.weight.detach()
            assert abs(w.std().item() - 0.01) < 0.001, name
            assert abs(w.mean().item()) < 0.001, name
            assert torch.all(module.bias == (1.0 if name in bias_one else 0.0)), name


# ablation switches ------------------------------------------------------------------------------


def test_tanh_switch(paper: PaperAlexNet, paper_acts: Acts, image: torch.Tensor) -> None:
    model = ablation(paper, activation="tanh")
    with torch.no_grad():
        conv1 = model.activations(image, ["conv1"])["conv1"]
        pre = F.conv2d(image, model.kernels("conv1"), torch.zeros(96), stride=4, padding=2)
    torch.testing.assert_close(conv1, torch.tanh(pre), rtol=1e-4, atol=1e-5)
    assert conv1.min() < 0


def test_lrn_switch_off(paper: PaperAlexNet, paper_acts: Acts, image: torch.Tensor) -> None:
    model = ablation(paper, lrn=False)
    assert "norm1" not in model.layer_names() and "norm2" not in model.layer_names()
    with torch.no_grad():
        acts = model.activations(image, ["conv1", "pool1", "fc8"])
    torch.testing.assert_close(acts["pool1"], F.max_pool2d(acts["conv1"], 3, 2))
    assert not torch.allclose(acts["fc8"], paper_acts["fc8"])


def test_lrn_formula_switch(paper: PaperAlexNet, paper_acts: Acts, image: torch.Tensor) -> None:
    model = ablation(paper, lrn_formula="torch")
    with torch.no_grad():
        norm1 = model.activations(image, ["norm1"])["norm1"]
    # Each tower normalises over its own 48 maps (one GPU's kernels in the paper), not across the split.
    torch_lrn = torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
    want = torch.cat([torch_lrn(half) for half in paper_acts["conv1"].split(48, dim=1)], dim=1)
    torch.testing.assert_close(norm1, want)
    assert not torch.allclose(norm1, paper_acts["norm1"])


def test_non_overlapping_pooling_still_feeds_6x6_to_fc6(paper: PaperAlexNet, image: torch.Tensor) -> None:
    model = ablation(paper, pooling="non-overlapping")
    with torch.no_grad():
        acts = model.activations(image, ["norm1", "pool1", "pool5", "fc8"])
    torch.testing.assert_close(acts["pool1"], F.max_pool2d(acts["norm1"], 2, 2))
    assert acts["pool5"].shape[1:] == (256, 6, 6)
    assert acts["fc8"].shape == (1, 1000)


def test_dropout_switch(paper: PaperAlexNet, paper_acts: Acts, image: torch.Tensor) -> None:
    no_dropout = ablation(paper, dropout=0.0).train()
    with torch.no_grad():
        torch.testing.assert_close(no_dropout(image), paper_acts["fc8"])
        paper.train()
        try:
            assert not torch.allclose(paper(image), paper_acts["fc8"])
        finally:
            paper.eval()


def test_torchvision_refuses_ablations_it_cannot_honour() -> None:
    for change in ({"activation": "tanh"}, {"pooling": "non-overlapping"}):
        with pytest.raises(ValueError, match="torchvision"):
            build_model(ModelConfig(arch="torchvision", **change))


@pytest.mark.parametrize("cfg", [ModelConfig(arch="caffe"), ModelConfig(num_classes=0)])  # type: ignore[arg-type]
def test_build_model_refuses_bad_settings(cfg: ModelConfig) -> None:
    with pytest.raises(ValueError):
        build_model(cfg)


# kernels ----------------------------------------------------------------------------------------


def test_conv1_kernels_and_towers(paper: PaperAlexNet) -> None:
    kernels = paper.kernels("conv1")
    towers = paper.kernel_towers("conv1")
    assert kernels.shape == (96, 3, 11, 11)
    assert towers == [i // 48 for i in range(96)]
    for i in (0, 47, 48, 95):
        torch.testing.assert_close(kernels[i], paper.towers[towers[i]].conv1.weight[i % 48].detach())
    assert paper.kernels("conv3").shape == (384, 256, 3, 3)
    with pytest.raises(ValueError, match="not a conv layer"):
        paper.kernels("fc6")


def test_torchvision_kernels_are_one_tower() -> None:
    model = TorchvisionAlexNet(num_classes=10)
    assert model.kernels("conv1").shape == (64, 3, 11, 11)
    assert model.kernel_towers("conv2") == [0] * 192
    torch.testing.assert_close(model.kernels("conv5"), model.features[10].weight.detach())


# torchvision weights ----------------------------------------------------------------------------


def test_torchvision_state_dict_loads_and_gives_identical_logits(image: torch.Tensor) -> None:
    reference = torchvision.models.alexnet(weights=None).eval()
    model = TorchvisionAlexNet().eval()
    load_torchvision_weights(model, reference.state_dict())
    with torch.no_grad():
        assert torch.equal(model(image), reference(image))


def test_torchvision_weights_mismatch_names_every_problem() -> None:
    reference = torchvision.models.alexnet(weights=None).state_dict()
    bad = dict(reference)
    del bad["features.0.bias"]
    bad["features.99.weight"] = torch.zeros(1)
    bad["features.3.weight"] = torch.zeros(64, 3, 5, 5)
    model = TorchvisionAlexNet(num_classes=10)
    with pytest.raises(WeightsError) as error:
        load_torchvision_weights(model, bad, source="alexnet.pth")
    message = str(error.value)
    assert message.startswith("alexnet.pth: ")
    for part in ("missing keys: features.0.bias", "unexpected keys: features.99.weight",
                 "features.3.weight has shape (64, 3, 5, 5)", "classifier.6.weight has shape (1000, 4096)",
                 "num_classes=1000"):  # fmt: skip
        assert part in message
    with pytest.raises(TypeError):
        load_torchvision_weights(PaperAlexNet.__new__(PaperAlexNet), reference)  # type: ignore[arg-type]


# summary ----------------------------------------------------------------------------------------


def test_summary_of_the_paper_model(paper: PaperAlexNet) -> None:
    rows = summary_rows(paper)
    assert rows[0] == ("input", (3, 224, 224), 0)
    by_layer = {r.layer: r for r in rows}
    assert by_layer["conv1 (2 x 48)"].shape == (96, 55, 55)
    assert by_layer["conv1 (2 x 48)"].params == 2 * (48 * 3 * 11 * 11 + 48)
    assert by_layer["fc6 (2 x 2048)"].shape == (4096,)
    assert by_layer["fc8"].params == 4096 * 1000 + 1000
    assert sum(r.params for r in rows) == n_params(paper)
    text = format_summary(rows)
    assert text.splitlines()[-1] == "Total parameters: 60,965,224"
    assert "96 x 55 x 55" in text and "pool5" in text


def test_summary_of_torchvision_at_another_size() -> None:
    model = TorchvisionAlexNet(num_classes=10)
    rows = summary_rows(model, input_size=96)
    assert rows[1] == ("conv1", (64, 23, 23), 23_296)
    assert sum(r.params for r in rows) == n_params(model)
    assert model.training  # the summary leaves the mode as it was
    with pytest.raises(ValueError, match="32x32"):
        summary_rows(model, input_size=32)
