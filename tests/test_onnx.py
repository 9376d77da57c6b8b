"""ONNX export and the ONNX Runtime predictor: parity with PyTorch, metadata, providers, bad files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from alexgui import __version__
from alexgui.cli import main as cli_main
from alexgui.config import RunConfig
from alexgui.engine.data.stats import DataStats
from alexgui.engine.data.transforms import Preprocess
from alexgui.engine.inference import onnx_cache, onnx_providers
from alexgui.engine.inference.onnx_export import ExportError, export_onnx
from alexgui.engine.inference.onnx_format import META_FORMAT, decode_array, encode_array
from alexgui.engine.inference.onnx_providers import OnnxModelError, provider_chain
from alexgui.engine.inference.onnx_runtime import OnnxPredictor
from alexgui.engine.inference.parity import generated_images, parity_check, parity_path
from alexgui.engine.inference.predict import (
    PredictorError,
    TorchPredictor,
    classify_files,
)
from alexgui.engine.inference.sources import load_predictor
from alexgui.engine.model.networks import build_model
from alexgui.engine.store.checkpoint import save_checkpoint, weights_fingerprint
from alexgui.engine.training.checkpoints import CHECKPOINT_FORMAT

CLASS_NAMES = ["apple", "bicycle", "cloud", "daisy", "eagle", "fern", "guitar", "harbour", "igloo", "jaguar"]
REPO = Path(__file__).resolve().parents[1]


# ---- fixtures -------------------------------------------------------------------------------------


def _paper_checkpoint(path: Path) -> Path:
    """A 10-class paper model with random weights, saved with the trainer's checkpoint layout."""
    cfg = RunConfig()
    cfg.model.arch = "paper"
    cfg.model.num_classes = len(CLASS_NAMES)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    rng = np.random.default_rng(0)
    stats = DataStats(
        mean_image=rng.uniform(60, 200, (256, 256, 3)).astype(np.float32),
        pca_eigvals=np.array([300.0, 30.0, 3.0], np.float32),
        pca_eigvecs=np.linalg.qr(rng.normal(size=(3, 3)))[0].astype(np.float32),
    )
    pre = Preprocess.from_stats(stats)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({
        "stats.mean_image": torch.from_numpy(stats.mean_image),
        "stats.pca_eigvals": torch.from_numpy(stats.pca_eigvals),
        "stats.pca_eigvecs": torch.from_numpy(stats.pca_eigvecs),
    })
    meta = {
        "format": CHECKPOINT_FORMAT,
        "alexgui_version": __version__,
        "config": cfg.to_toml(),
        "arch": "paper",
        "class_names": CLASS_NAMES,
        "preprocessing": pre.describe(),
        "epoch": 1,
        "batch": 0,
        "step": 10,
    }
    save_checkpoint(path, tensors, meta)
    return path


def _write_images(folder: Path, n: int = 4) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(generated_images(n, seed=7)):
        # Not 256x256, so decoding, resizing and cropping are part of what is compared.
        p = folder / f"img{i}.png"
        Image.fromarray(img).resize((300 + 20 * i, 260)).save(p)
        paths.append(p)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return paths


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def checkpoint(workdir: Path) -> Path:
    return _paper_checkpoint(workdir / "paper.safetensors")


@pytest.fixture(scope="module")
def images(workdir: Path) -> list[Path]:
    return _write_images(workdir / "images")


@pytest.fixture(scope="module")
def paper_export(workdir: Path, checkpoint: Path, images: list[Path]) -> tuple[Path, int, str]:
    """The paper model exported through the command line, with a parity check on real files."""
    out = workdir / "model.onnx"
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        rc = cli_main(["export", "--model", str(checkpoint), "--out", str(out), "--images", str(images[0].parent)])
    return out, rc, buffer.getvalue()


@pytest.fixture(scope="module")
def torch_predictor(checkpoint: Path) -> TorchPredictor:
    pred = load_predictor(checkpoint)
    assert isinstance(pred, TorchPredictor)
    return pred


def _tiny_model(path: Path, input_shape: list, classes: int = 5, features: bool = False, meta: dict | None = None,
                custom_op: bool = False) -> Path:
    """A small hand-made ONNX classifier (global average pool + linear), like a foreign export."""
    rng = np.random.default_rng(1)
    channels = input_shape[1]  # what GlobalAveragePool leaves, whatever the layout
    w = helper.make_tensor("w", TensorProto.FLOAT, [channels, classes], rng.normal(size=(channels, classes)).ravel().tolist())
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["logits"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [input_shape[0], classes])]
    if features:
        wf = helper.make_tensor("wf", TensorProto.FLOAT, [channels, 4096], rng.normal(size=(channels, 4096)).ravel().tolist())
        nodes.append(helper.make_node("MatMul", ["flat", "wf"], ["features"]))
        outputs.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, [input_shape[0], 4096]))
        inits = [w, wf]
    else:
        inits = [w]
    opsets = [helper.make_opsetid("", 18)]
    if custom_op:
        nodes.append(helper.make_node("Evil", ["logits"], ["evil"], domain="com.example.evil"))
        outputs.append(helper.make_tensor_value_info("evil", TensorProto.FLOAT, None))
        opsets.append(helper.make_opsetid("com.example.evil", 1))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=opsets, ir_version=10)
    for key, value in (meta or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save_model(model, path)
    return path


def _top5(probs: np.ndarray) -> list[list[int]]:
    return [list(map(int, np.argsort(-p, kind="stable")[:5])) for p in probs]


# ---- export and parity ----------------------------------------------------------------------------


def test_cli_export_writes_a_checked_model_and_a_passing_parity_report(paper_export, images) -> None:
    out, rc, stdout = paper_export
    assert rc == 0, stdout
    assert "parity PASSED" in stdout
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    # Dynamic batch on the input and both outputs.
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [o.name for o in model.graph.output] == ["logits", "features"]
    for o in model.graph.output:
        assert o.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [d.dim_value for d in model.graph.output[1].type.tensor_type.shape.dim[1:]] == [4096]
    # LRN's x ** 0.75 is computed with square roots (see onnx_export), the parity below covers it.
    ops = {n.op_type for n in model.graph.node}
    assert "Pow" not in ops and "Sqrt" in ops
    report = json.loads(parity_path(out).read_text())
    assert report["passed"] is True
    assert report["generated"]["images"] == 8
    assert report["real"]["images"] == len(images)
    assert len(report["skipped"]) == 1 and "broken.jpg" in report["skipped"][0]
    assert report["max_abs_logit_diff"] < 1e-3 * max(1.0, report["generated"]["logit_scale"])
    assert report["generated"]["max_abs_feature_diff"] < 1e-3
    assert report["top1_agreement"] == 1.0
    assert not any(f.name.startswith(".model.onnx.tmp") for f in out.parent.iterdir())


def test_torchvision_architecture_exports_through_the_cache_with_parity(tmp_path: Path, monkeypatch) -> None:
    torch.manual_seed(1)
    from alexgui.config import ModelConfig

    model = build_model(ModelConfig(arch="torchvision", num_classes=10))
    pred = TorchPredictor(model, Preprocess.imagenet_mean_std(), CLASS_NAMES, weights_fingerprint(model.state_dict()), "tv")
    onnx_pred = onnx_cache.exported_predictor(pred, cache_dir=tmp_path, device="cpu")
    assert onnx_pred.arch == "torchvision" and onnx_pred.precision == "float32"
    assert onnx_pred.describe()["exported_from"] == "tv"
    report = parity_check(pred, onnx_pred.path)
    assert report.passed, report.summary()
    assert report.top1_agreement == 1.0
    assert report.max_abs_logit_diff < 1e-3 * max(1.0, report.generated.logit_scale)

    # The second request for the same weights reuses the cached file instead of exporting again.
    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the cache holds this model")

    monkeypatch.setattr("alexgui.engine.inference.onnx_export.export_onnx", no_export)
    again = onnx_cache.exported_predictor(pred, cache_dir=tmp_path, device="cpu")
    assert again.path == onnx_pred.path
    u8 = generated_images(2, seed=3)
    np.testing.assert_allclose(again.predict_u8(u8)[0], pred.predict_u8(u8)[0], atol=1e-5)


@pytest.mark.slow
def test_fp16_export_stays_close_to_float32_pytorch(tmp_path: Path, torch_predictor: TorchPredictor) -> None:
    out = export_onnx(torch_predictor, tmp_path / "half.onnx", fp16=True)
    model = onnx.load(out)
    initializer_types = {t.data_type for t in model.graph.initializer if len(t.dims) > 1}
    assert initializer_types == {TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT  # I/O stays float32
    report = parity_check(torch_predictor, out)
    assert report.precision == "float16"
    assert report.passed, report.summary()
    assert report.max_abs_logit_diff > 0  # really computed in half precision


def test_bad_opset_is_refused_before_any_work(tmp_path: Path, torch_predictor: TorchPredictor) -> None:
    with pytest.raises(ExportError, match=r"opset 17 is not supported; choose 18\.\.") as e:
        export_onnx(torch_predictor, tmp_path / "m.onnx", opset=17)
    assert str(tmp_path / "m.onnx") in str(e.value)
    assert not (tmp_path / "m.onnx").exists()


def test_cli_export_reports_a_missing_model(tmp_path: Path, capsys) -> None:
    rc = cli_main(["export", "--model", str(tmp_path / "nope.safetensors"), "--out", str(tmp_path / "m.onnx")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "nope.safetensors" in err and "no such file" in err
    assert not (tmp_path / "m.onnx").exists()


def test_export_cache_key_follows_weights_names_and_precision(torch_predictor: TorchPredictor) -> None:
    from alexgui.engine.inference.onnx_cache import export_key

    key = export_key(torch_predictor, False, 18)
    assert key == export_key(torch_predictor, False, 18)
    assert key != export_key(torch_predictor, True, 18)
    assert key != export_key(torch_predictor, False, 20)
    renamed = TorchPredictor(torch_predictor.model, torch_predictor.preprocess, CLASS_NAMES[::-1],
                             torch_predictor.fingerprint, "renamed")
    assert key != export_key(renamed, False, 18)


def test_onnx_backend_takes_onnx_files_as_they_are_and_converts_the_rest(paper_export, checkpoint, monkeypatch) -> None:
    from alexgui.engine.inference.onnx_cache import load_onnx_backend

    assert load_onnx_backend(paper_export[0], device="cpu").path == paper_export[0]
    seen = {}

    def fake_convert(predictor, cache_dir=None, device="auto", threads=None, progress=None, keep=3):  # type: ignore[no-untyped-def]
        seen.update(source=predictor.source, device=device)
        return "converted"

    monkeypatch.setattr(onnx_cache, "exported_predictor", fake_convert)
    assert load_onnx_backend(checkpoint, device="cpu") == "converted"
    assert seen == {"source": str(checkpoint), "device": "cpu"}


# ---- the exported file on its own ---------------------------------------------------------------


def test_metadata_round_trip(paper_export, torch_predictor: TorchPredictor) -> None:
    out = paper_export[0]
    pred = OnnxPredictor(out, "cpu")
    assert pred.class_names == CLASS_NAMES
    assert pred.arch == "paper"
    assert pred.fingerprint == torch_predictor.fingerprint
    assert pred.preprocess.describe() == torch_predictor.preprocess.describe()
    # The mean image travels bit for bit, so both backends feed the graph identical tensors.
    assert torch.equal(pred.preprocess.mean, torch_predictor.preprocess.mean)
    u8 = torch.from_numpy(generated_images(2))
    assert torch.equal(pred.preprocess.ten_crop_batch(u8), torch_predictor.preprocess.ten_crop_batch(u8))
    meta = {p.key: p.value for p in onnx.load(out, load_external_data=False).metadata_props}
    assert meta[META_FORMAT] == "1"
    assert json.loads(meta["alexgui.input"])["shape"] == ["batch", 3, 224, 224]
    assert json.loads(meta["alexgui.preprocessing"])["mode"] == "mean_image"
    described = pred.describe()
    assert described["backend"] == "onnxruntime" and described["provider"] == "CPUExecutionProvider"
    assert described["num_classes"] == 10 and "warnings" not in described


def test_array_encoding_round_trip_and_damage() -> None:
    a = np.random.default_rng(0).normal(size=(4, 5, 3)).astype(np.float32)
    assert np.array_equal(decode_array(encode_array(a), "x"), a)
    bad = encode_array(a)
    bad["shape"] = [4, 5, 4]
    with pytest.raises(ValueError, match=r"stats x: 240 bytes of data for shape \(4, 5, 4\)"):
        decode_array(bad, "stats x")


def test_exported_model_labels_images_with_its_own_class_names(paper_export, images, torch_predictor) -> None:
    pred = load_predictor(paper_export[0])
    assert isinstance(pred, OnnxPredictor)
    results = list(classify_files(pred, [*images, images[0].parent / "broken.jpg"]))
    expected = list(classify_files(torch_predictor, images))
    assert results[-1].error is not None
    for got, want in zip(results, expected):
        assert got.error is None
        assert [t.label for t in got.top] == [t.label for t in want.top]
        assert all(t.label in CLASS_NAMES for t in got.top)
        np.testing.assert_allclose([t.prob for t in got.top], [t.prob for t in want.top], atol=1e-5)
    u8 = generated_images(3, seed=5)
    for ten_crop in (False, True):
        probs, feats = pred.predict_u8(u8, ten_crop=ten_crop)
        t_probs, t_feats = torch_predictor.predict_u8(u8, ten_crop=ten_crop)
        assert feats.shape == (3, 4096)
        np.testing.assert_allclose(probs, t_probs, atol=1e-5)
        np.testing.assert_allclose(feats, t_feats, atol=1e-4, rtol=1e-4)


def test_fresh_process_with_only_the_onnx_file_gives_the_same_top5(paper_export, images, torch_predictor, tmp_path) -> None:
    alone = tmp_path / "alone" / "model.onnx"
    alone.parent.mkdir()
    os.link(paper_export[0], alone) if hasattr(os, "link") else alone.write_bytes(paper_export[0].read_bytes())
    script = (
        "import json, sys\n"
        "import numpy as np\n"
        "from alexgui.engine.data.imageio import load_256\n"
        "from alexgui.engine.inference.onnx_runtime import OnnxPredictor\n"
        "p = OnnxPredictor(sys.argv[1], 'cpu', threads=1)\n"
        "u8 = np.stack([load_256(f) for f in sys.argv[2:]])\n"
        "probs, _ = p.predict_u8(u8)\n"
        "print(json.dumps([[p.class_names[i] for i in np.argsort(-row, kind='stable')[:5]] for row in probs]))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script, str(alone), *map(str, images)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    from alexgui.engine.data.imageio import load_256

    probs, _ = torch_predictor.predict_u8(np.stack([load_256(f) for f in images]))
    expected = [[CLASS_NAMES[i] for i in row] for row in _top5(probs)]
    assert json.loads(done.stdout) == expected


# ---- providers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_gpu_request_falls_back_to_cpu_and_says_why(tmp_path: Path, device: str) -> None:
    path = _tiny_model(tmp_path / "tiny.onnx", ["batch", 3, 224, 224], features=True)
    pred = OnnxPredictor(path, device)
    wanted = "TensorrtExecutionProvider" if device == "tensorrt" else "CUDAExecutionProvider"
    if pred.provider == wanted:
        pytest.skip(f"{wanted} really works on this machine")
    assert pred.provider in ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert any(wanted in note for note in pred.provider_notes)
    assert pred.describe()["provider"] == pred.provider
    probs, feats = pred.predict_u8(generated_images(2))
    assert probs.shape == (2, 5) and feats.shape == (2, 4096)


def test_failing_gpu_providers_fall_back_to_cpu_deterministically(tmp_path: Path, monkeypatch) -> None:
    path = _tiny_model(tmp_path / "tiny.onnx", ["batch", 3, 224, 224])
    real_new_session = onnx_providers._new_session

    def gpu_breaks(path, options, providers, provider_options):
        if providers[0] != "CPUExecutionProvider":
            raise OnnxModelError(path, "simulated: libcudnn.so.9 not found")
        return real_new_session(path, options, providers, provider_options)

    monkeypatch.setattr(onnx_providers, "_new_session", gpu_breaks)
    monkeypatch.setattr(onnx_providers, "gpu_present", lambda: True)
    pred = OnnxPredictor(path, "auto")
    assert pred.provider == "CPUExecutionProvider"
    assert pred.provider_notes == [
        "TensorrtExecutionProvider unavailable: simulated: libcudnn.so.9 not found",
        "CUDAExecutionProvider unavailable: simulated: libcudnn.so.9 not found",
    ]
    monkeypatch.setattr(onnx_providers.ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    pred = OnnxPredictor(path, "cuda")
    assert pred.provider_notes == ["CUDAExecutionProvider is not part of this onnxruntime build"]


def test_provider_chain() -> None:
    assert provider_chain("auto") == (["tensorrt", "cuda", "cpu"], 0)
    assert provider_chain("cuda:1") == (["cuda", "cpu"], 1)
    assert provider_chain("CPU") == (["cpu"], 0)
    with pytest.raises(ValueError, match="expected auto, cpu"):
        provider_chain("rocm")


# ---- bad files ---------------------------------------------------------------------------------------


def test_corrupt_and_unreadable_files_are_named(tmp_path: Path, paper_export) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(os.urandom(2048))
    truncated = tmp_path / "truncated.onnx"
    with open(paper_export[0], "rb") as f:
        truncated.write_bytes(f.read(100_000))
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    cases = {
        garbage: "not a valid ONNX model",
        truncated: "not a valid ONNX model",
        empty: "empty file",
        tmp_path / "missing.onnx": "no such file",
        tmp_path: "is a folder",
    }
    for path, problem in cases.items():
        with pytest.raises(OnnxModelError) as e:
            OnnxPredictor(path, "cpu")
        assert str(e.value).startswith(f"{path}: ") and problem in str(e.value)
    with pytest.raises(PredictorError, match="garbage.onnx: not a valid ONNX model"):
        load_predictor(garbage)


def test_model_without_metadata_is_accepted_with_stated_defaults(tmp_path: Path) -> None:
    path = _tiny_model(tmp_path / "foreign.onnx", ["N", 3, 224, 224], classes=7)
    pred = OnnxPredictor(path, "cpu")
    assert pred.class_names == [f"class {i}" for i in range(7)]
    assert pred.preprocess.describe() == Preprocess.imagenet_mean_std().describe()
    text = " ".join(pred.warnings)
    assert str(path) in text and "no alexgui metadata" in text and "mean [0.485" in text
    assert "no fc7 features output" in text
    probs, feats = pred.predict_u8(generated_images(3), ten_crop=True)
    assert probs.shape == (3, 7) and feats.shape == (3, 0)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert pred.describe()["warnings"] == pred.warnings


def test_fixed_batch_model_is_fed_in_chunks(tmp_path: Path) -> None:
    path = _tiny_model(tmp_path / "b1.onnx", [1, 3, 224, 224], features=True)
    pred = OnnxPredictor(path, "cpu")
    u8 = generated_images(3)
    together = pred.predict_u8(u8)[0]
    alone = np.concatenate([pred.predict_u8(u8[i : i + 1])[0] for i in range(3)])
    np.testing.assert_allclose(together, alone, rtol=1e-6)


@pytest.mark.parametrize(
    ("shape", "meta", "problem"),
    [
        (["N", 3, 64, 64], None, r"has shape \(N, 3, 64, 64\), but the preprocessing makes \(batch, 3, 224, 224\)"),
        (["N", 224, 224, 3], None, r"channels last; alexgui feeds channels first"),
        (["N", 3, 224], None, r"has shape \(N, 3, 224\); alexgui feeds images as"),
    ],
)
def test_input_shape_that_does_not_fit_is_refused(tmp_path: Path, shape, meta, problem) -> None:
    path = _tiny_model(tmp_path / "odd.onnx", shape) if len(shape) == 4 else _odd_rank_model(tmp_path / "odd.onnx")
    with pytest.raises(OnnxModelError, match=problem) as e:
        OnnxPredictor(path, "cpu")
    assert str(e.value).startswith(str(path))


def _odd_rank_model(path: Path) -> Path:
    node = helper.make_node("ReduceMean", ["input"], ["logits"], keepdims=0)
    graph = helper.make_graph([node], "odd", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), path)
    return path


def test_metadata_that_contradicts_the_graph_is_refused(tmp_path: Path, paper_export) -> None:
    real = {p.key: p.value for p in onnx.load(paper_export[0], load_external_data=False).metadata_props}
    # The metadata of a 10-class 224 model on a 5-class 64x64 graph.
    path = _tiny_model(tmp_path / "liar.onnx", ["N", 3, 64, 64], classes=5, meta=real)
    with pytest.raises(OnnxModelError, match=r"liar.onnx: input 'input' has shape \(N, 3, 64, 64\)"):
        OnnxPredictor(path, "cpu")
    path = _tiny_model(tmp_path / "liar2.onnx", ["N", 3, 224, 224], classes=5, meta=real)
    with pytest.raises(OnnxModelError, match="names 10 classes but the model outputs 5 logits"):
        OnnxPredictor(path, "cpu")
    broken = {**real, "alexgui.class_names": "[not json"}
    path = _tiny_model(tmp_path / "broken.onnx", ["N", 3, 224, 224], classes=10, meta=broken)
    with pytest.raises(OnnxModelError, match="metadata alexgui.class_names is not valid JSON"):
        OnnxPredictor(path, "cpu")


def test_custom_operator_is_refused_without_loading_code(tmp_path: Path) -> None:
    path = _tiny_model(tmp_path / "custom.onnx", ["N", 3, 224, 224], custom_op=True)
    with pytest.raises(OnnxModelError, match="custom.onnx: ") as e:
        OnnxPredictor(path, "cpu")
    assert "Evil" in str(e.value) or "com.example.evil" in str(e.value)


# ---- File > Export ----------------------------------------------------------------------------------


def _wait_idle(qtbot, dialog) -> None:  # type: ignore[no-untyped-def]
    qtbot.waitUntil(lambda: not dialog.is_running() and dialog.export_button.isEnabled(), timeout=60_000)


def test_export_dialog_runs_the_job_and_shows_the_parity_report(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from alexgui.engine.inference.parity import ExportResult, ParityReport, SourceParity
    from alexgui.qt.export_dialog import ExportDialog

    calls = []

    def fake_export(model, out, fp16, opset, images_dir, *, stop, progress):  # type: ignore[no-untyped-def]
        calls.append((model, out, fp16, opset, images_dir))
        progress(1, 3, "tracing")
        report = ParityReport(onnx=out, precision="float16", provider="CPUExecutionProvider", tolerance=0.05,
                              passed=True, generated=SourceParity(images=8, max_abs_logit_diff=0.002, logit_scale=3.0),
                              real=None, real_dir=None, skipped=[], seconds=1.0)
        return ExportResult(Path(out), report, parity_path(out), 2.5, 123_000_000)

    dialog = ExportDialog(model="run1", export_fn=fake_export)
    qtbot.addWidget(dialog)
    assert not dialog.export_button.isEnabled()  # no output file yet
    dialog.out_edit.setText(str(tmp_path / "m"))
    dialog.fp16_box.setChecked(True)
    dialog.opset_spin.setValue(20)
    with qtbot.waitSignal(dialog.exported, timeout=60_000) as signal:
        dialog.export_button.click()
    _wait_idle(qtbot, dialog)
    assert calls == [("run1", str(tmp_path / "m.onnx"), True, 20, None)]
    assert signal.args[0].path == tmp_path / "m.onnx"
    assert "parity PASSED" in dialog.report_view.toPlainText()
    assert "m.parity.json" in dialog.report_view.toPlainText()
    assert "123.0 MB" in dialog.status_label.text()


def test_export_dialog_shows_a_bad_model_and_stays_usable(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from alexgui.qt.export_dialog import ExportDialog

    dialog = ExportDialog(model=str(tmp_path / "missing.safetensors"))
    qtbot.addWidget(dialog)
    dialog.out_edit.setText(str(tmp_path / "out.onnx"))
    dialog.export_button.click()
    _wait_idle(qtbot, dialog)
    assert "Export failed" in dialog.status_label.text()
    assert "missing.safetensors" in dialog.report_view.toPlainText()
    assert dialog.model_edit.isEnabled()
    assert not (tmp_path / "out.onnx").exists()
