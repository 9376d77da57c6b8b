"""The explanation methods (issue 15 item 1): the maps' shape, range and class for both architectures,
the settings they refuse, cancellation and progress, and agreement with Captum on the same model.
Faithfulness on a trained model is in test_explain_faithful.py."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

from alexgui.config import ModelConfig
from alexgui.engine.data.transforms import Preprocess
from alexgui.engine.inference.predict import TorchPredictor
from alexgui.engine.model.networks import build_model
from alexgui.engine.understand import explain as ex
from alexgui.engine.understand.explain import (
    METHODS,
    Cancelled,
    ExplainError,
    Explanation,
    explain,
    occlusion_positions,
    resolve_class,
)
from tests.explore_helpers import MeanColourPredictor

FAST = {"patch": 64, "stride": 64}  # 4x4 occlusion windows: the tests' occlusion in a fraction of a second


def predictor_of(arch: str, num_classes: int = 3, activation: str = "relu", seed: int = 0) -> TorchPredictor:
    torch.manual_seed(seed)
    model = build_model(ModelConfig(arch=arch, num_classes=num_classes, activation=activation)).eval()
    names = ["tabby cat", "golden_retriever", "church"][:num_classes]
    return TorchPredictor(model, Preprocess.imagenet_mean_std(), names, f"rand-{arch}", f"random {arch} model")


@pytest.fixture(scope="module", params=["paper", "torchvision"])
def predictor(request: pytest.FixtureRequest) -> TorchPredictor:
    return predictor_of(request.param)


def photo(seed: int = 0) -> np.ndarray:
    """A 256x256 uint8 image with some structure (smooth noise and a bright square)."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (16, 16, 3))
    image = np.kron(small, np.ones((16, 16, 1)))
    image[90:150, 100:170] = (240, 220, 30)
    return image.astype(np.uint8)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_a_map_over_the_crop_in_0_to_1_for_the_class_asked(predictor, method) -> None:
    e = explain(predictor, photo(), method, class_index=1, **FAST)
    assert isinstance(e, Explanation)
    assert e.method == method and e.class_index == 1 and e.class_name == "golden_retriever"
    assert e.map.shape == (224, 224) and e.map.dtype == np.float32
    assert e.crop.shape == (224, 224, 3) and e.crop.dtype == np.uint8
    assert float(e.map.min()) >= 0.0 and float(e.map.max()) <= 1.0
    if e.raw_max > 0:
        assert float(e.map.max()) == pytest.approx(1.0)
        assert e.map[e.peak] >= 0.99
    probs, _ = predictor.predict_u8(photo()[None])
    assert e.prob == pytest.approx(float(probs[0, 1]), abs=1e-5)


def test_the_default_class_is_the_top_one(predictor) -> None:
    probs, _ = predictor.predict_u8(photo()[None])
    e = explain(predictor, photo(), "gradcam")
    assert e.class_index == int(probs[0].argmax())


def test_the_crop_is_the_centre_of_the_image(predictor) -> None:
    u8 = photo(3)
    e = explain(predictor, u8, "saliency")
    np.testing.assert_array_equal(e.crop, u8[16:240, 16:240])


def test_bad_settings_are_refused_with_a_message(predictor) -> None:
    with pytest.raises(ExplainError, match="out of range"):
        explain(predictor, photo(), "gradcam", class_index=3)
    with pytest.raises(ExplainError, match="unknown method"):
        explain(predictor, photo(), "deconvnet")
    with pytest.raises(ExplainError, match="patch and stride"):
        explain(predictor, photo(), "occlusion", patch=0)
    with pytest.raises(ExplainError, match="patch and stride"):
        explain(predictor, photo(), "occlusion", patch=32, stride=300)


def test_a_model_without_a_pytorch_network_is_refused() -> None:
    with pytest.raises(ExplainError, match="need the PyTorch model"):
        explain(MeanColourPredictor(), photo(), "gradcam")


def test_guided_backprop_refuses_tanh_and_puts_every_relu_back() -> None:
    tanh = predictor_of("paper", activation="tanh")
    with pytest.raises(ExplainError, match="tanh"):
        explain(tanh, photo(), "guided-backprop")
    p = predictor_of("paper")
    before = [type(m) for m in p.model.modules()]
    saliency_before = explain(p, photo(), "saliency", 0).map
    explain(p, photo(), "guided-backprop", 0)
    assert [type(m) for m in p.model.modules()] == before
    assert not any(isinstance(m, ex.GuidedReLU) for m in p.model.modules())
    np.testing.assert_array_equal(explain(p, photo(), "saliency", 0).map, saliency_before)


def test_guided_backprop_differs_from_plain_saliency() -> None:
    p = predictor_of("paper")
    guided = explain(p, photo(), "guided-backprop", 0).map
    plain = explain(p, photo(), "saliency", 0).map
    assert not np.allclose(guided, plain)


def test_resolve_class_takes_an_index_or_a_loose_name() -> None:
    p = predictor_of("paper")
    assert resolve_class(p, "2") == 2
    assert resolve_class(p, "golden retriever") == 1
    assert resolve_class(p, "Tabby_Cat") == 0
    with pytest.raises(ExplainError, match="out of range"):
        resolve_class(p, "3")
    with pytest.raises(ExplainError, match="out of range"):
        resolve_class(p, "-1")
    with pytest.raises(ExplainError, match="no class named 'zebra'.*tabby cat"):
        resolve_class(p, "zebra")


def test_occlusion_positions_cover_the_crop_with_the_last_patch_flush() -> None:
    assert occlusion_positions(224, 32, 16) == list(range(0, 193, 16))
    assert occlusion_positions(224, 64, 64) == [0, 64, 128, 160]
    assert occlusion_positions(224, 224, 16) == [0]
    assert len(occlusion_positions(224, 32, 16)) ** 2 == 169


def test_occlusion_reports_progress_and_equals_one_window_at_a_time(predictor) -> None:
    """Batching changes nothing: the map equals occluding one copy at a time by hand."""
    seen: list[tuple[int, int]] = []
    e = explain(predictor, photo(), "occlusion", 0, patch=96, stride=64, batch_size=3,
                progress=lambda done, total: seen.append((done, total)))
    starts = occlusion_positions(224, 96, 64)
    assert seen[0] == (0, len(starts) ** 2) and seen[-1] == (len(starts) ** 2,) * 2
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    x = predictor.preprocess.preprocess_image_u8(photo())
    with torch.no_grad():
        base = float(torch.softmax(predictor.model(x), 1)[0, 0])
        drops = []
        for top in starts:
            for left in starts:
                y = x.clone()
                y[:, :, top : top + 96, left : left + 96] = 0
                drops.append(max(0.0, base - float(torch.softmax(predictor.model(y), 1)[0, 0])))
    centre = (96 - 1) / 2
    grid = np.asarray(drops).reshape(len(starts), len(starts))
    peak = max(grid.max(), 1e-12)
    for i, top in enumerate(starts):  # at each patch centre the map is that patch's drop
        for j, left in enumerate(starts):
            r, c = int(top + centre), int(left + centre)  # centre 47.5: the map between 47 and 48
            assert e.map[r, c] == pytest.approx(grid[i, j] / peak if grid.max() > 0 else 0, abs=0.02)


def test_occlusion_stops_when_asked() -> None:
    p = predictor_of("torchvision")
    stop = threading.Event()
    calls = []

    def progress(done: int, total: int) -> None:
        calls.append(done)
        if done >= 4:
            stop.set()

    with pytest.raises(Cancelled):
        explain(p, photo(), "occlusion", patch=32, stride=16, batch_size=4, stop=stop, progress=progress)
    assert max(calls) < 169


def test_the_peak_of_a_plateau_is_its_middle() -> None:
    m = np.zeros((224, 224), np.float32)
    m[100:140, 20:60] = 1.0  # a flat top, as occlusion gives when any patch over the object kills it
    m[0, 0] = 0.995  # within the tie margin: part of the plateau, so the middle moves a little
    e = Explanation("occlusion", 0, "c", 0.5, m, np.zeros((224, 224, 3), np.uint8), 1.0)
    row, col = e.peak
    assert 100 <= row < 140 and 20 <= col < 60
    single = np.zeros((224, 224), np.float32)
    single[5, 200] = 1.0
    assert Explanation("gradcam", 0, "c", 0.5, single, e.crop, 1.0).peak == (5, 200)


def test_the_predictor_stays_usable_from_another_thread_during_an_explanation() -> None:
    """explain() holds the predictor's lock, so a classification waits rather than racing the model."""
    p = predictor_of("torchvision")
    results = []
    worker = threading.Thread(target=lambda: results.append(p.predict_u8(photo()[None])[0]))
    with p.lock:
        worker.start()
        worker.join(0.3)
        assert worker.is_alive()  # blocked on the lock
    worker.join(30)
    assert len(results) == 1


# ---- agreement with Captum ---------------------------------------------------------------------


captum_attr = pytest.importorskip("captum.attr")
# Captum says it hooks the ReLUs (and removes the hooks after); that is what is compared here.
captum_warnings = pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU:UserWarning",
                                             "ignore:.*inplace.*:UserWarning")


@captum_warnings
@pytest.mark.parametrize("arch", ["paper", "torchvision"])
def test_saliency_and_guided_backprop_equal_captums(arch) -> None:
    p = predictor_of(arch)
    x = p.preprocess.preprocess_image_u8(photo())
    ours = explain(p, photo(), "saliency", 2)
    theirs = captum_attr.Saliency(p.model).attribute(x.clone().requires_grad_(True), target=2, abs=True)
    ref = theirs[0].amax(0).detach().numpy()
    np.testing.assert_allclose(ours.map, ref / ref.max(), atol=1e-5)
    if arch == "torchvision":  # Captum's GuidedBackprop hooks nn.ReLU modules; the paper net's are too
        ours_g = explain(p, photo(), "guided-backprop", 2)
        theirs_g = captum_attr.GuidedBackprop(p.model).attribute(x.clone().requires_grad_(True), target=2)
        ref_g = theirs_g[0].abs().amax(0).detach().numpy()
        np.testing.assert_allclose(ours_g.map, ref_g / ref_g.max(), atol=1e-5)


@captum_warnings
def test_gradcam_equals_captums_layer_gradcam_on_torchvisions_conv5() -> None:
    p = predictor_of("torchvision")
    x = p.preprocess.preprocess_image_u8(photo())
    model = p.model
    relu5 = model.features[11]  # conv5's ReLU: Grad-CAM weighs the rectified maps
    assert isinstance(relu5, nn.ReLU)
    cam = captum_attr.LayerGradCam(model, relu5).attribute(x, target=1, relu_attributions=True)
    up = captum_attr.LayerAttribution.interpolate(cam, (224, 224), interpolate_mode="bilinear")
    ref = up[0, 0].detach().numpy()
    ours = explain(p, photo(), "gradcam", 1)
    if ref.max() <= 0:
        assert ours.raw_max == 0
    else:
        np.testing.assert_allclose(ours.map, np.clip(ref, 0, None) / ref.max(), atol=1e-4)


def test_the_paper_nets_gradcam_sees_both_towers_whole_conv5() -> None:
    """Grad-CAM's code is the same for both architectures (checked against Captum above); for the paper
    net it is fed both towers' rectified conv5 maps, which together are the model's whole conv5, and the
    logits of the same pass, which are the model's own. (Captum's LayerGradCam cannot take the paper's
    conv5 here: its ReLU is one module the tower reuses after every layer.)"""
    p = predictor_of("paper")
    x = p.preprocess.preprocess_image_u8(photo())
    with torch.no_grad():
        logits, towers = p.model.logits_and_towers(x, "conv5")
        whole = p.model.activations(x, ["conv5"])["conv5"]
        torch.testing.assert_close(logits, p.model(x))
    assert [t.shape[1] for t in towers] == [128, 128]
    torch.testing.assert_close(torch.cat(towers, dim=1), whole)
    assert float(whole.min()) >= 0  # rectified
    # and both towers contribute to the map (neither tower's weighted sum is zero)
    with torch.enable_grad():
        logits, towers = p.model.logits_and_towers(x, "conv5")
        grads = torch.autograd.grad(logits[0, 0], towers)
    shares = [float(((g.mean((2, 3), keepdim=True) * a.detach()).sum(1)).abs().sum()) for g, a in zip(grads, towers)]
    assert all(s > 0 for s in shares)


# ---- files -----------------------------------------------------------------------------------------


def test_the_files_are_a_figure_and_a_plain_float_map(tmp_path) -> None:
    from PIL import Image

    from alexgui.engine.understand.explain_files import output_stems, overlay, write_explanation

    p = predictor_of("torchvision")
    e = explain(p, photo(), "gradcam", 0)
    png, npy = write_explanation(tmp_path / "out", "photo.gradcam", e, opacity=0.7)
    loaded = np.load(npy, allow_pickle=False)  # a plain array: loading runs no code
    np.testing.assert_array_equal(loaded, e.map)
    with Image.open(png) as im:
        rgb = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(rgb[:224, :224], e.crop)
    np.testing.assert_array_equal(rgb[:224, 232:456], overlay(e, 0.7))
    np.testing.assert_array_equal(overlay(e, 0.0), e.crop)  # no opacity: the photo as it is
    assert sorted(q.name for q in (tmp_path / "out").iterdir()) == ["photo.gradcam.npy", "photo.gradcam.png"]
    assert output_stems(["a/cat.png", "b/cat.png", "c/cat-2.jpg", ""], "occlusion") == [
        "cat.occlusion", "cat-2.occlusion", "cat-2-2.occlusion", "image.occlusion"]


def test_the_caption_names_an_imagenet_class_as_people_read_it() -> None:
    from alexgui.engine.understand.explain_files import caption

    def of(class_name: str) -> str:
        m = np.zeros((224, 224), np.float32)
        m[10, 20] = 1.0
        e = Explanation("gradcam", 0, class_name, 0.5, m, np.zeros((224, 224, 3), np.uint8), 1.0)
        return caption(e)

    assert of("n01440764") == "Grad-CAM (conv5) · tench (n01440764) 50.0% · peak at row 10, column 20"
    assert of("polka_dots") == "Grad-CAM (conv5) · polka_dots 50.0% · peak at row 10, column 20"
