"""EPIC TRN checkpoint loading, validation and encoding, on fake checkpoints with the real key layout."""

from __future__ import annotations

import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from core.backbones.base import FrameEncoder
from core.backbones.resnet import ResNet50
from core.backbones.trn_checkpoint import (
    check_trn_checkpoint,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocessing,
    TRNCheckpointEncoder,
    _read_checkpoint,
    load_trn_relation_heads,
    preprocessing_from_hparams,
    random_trn_encoder,
)
from core.errors import UserError
from tolerances import RESNET50_ULPS, reordering_tolerance


pytestmark = pytest.mark.usefixtures("one_torch_thread")


N_CLASSES = 97 + 300
FRAME_COUNT = 8
CKPT_MEAN = [0.5, 0.4, 0.3]
CKPT_STD = [0.2, 0.25, 0.3]


def _hparams(mean=CKPT_MEAN, std=CKPT_STD) -> dict:
    """The structure of the EPIC configs/trn_rgb.yaml as Lightning stores it."""
    return {
        "modality": "RGB",
        "seed": 42,
        "data": {
            "frame_count": FRAME_COUNT,
            "segment_length": 1,
            "preprocessing": {"bgr": False, "rescale": True, "input_size": 224, "scale_size": 256, "mean": mean, "std": std},
            "train_augmentation": {"multiscale_crop_scales": [1, 0.875, 0.75, 0.66]},
            "test_augmentation": {"rescale_size": 256},
        },
        "model": {"type": "MTRN", "backbone": "resnet50", "pretrained": "imagenet", "backbone_dim": 256, "dropout": 0.7},
    }


@pytest.fixture(scope="module")
def state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    base = ResNet50(include_fc=False)
    with torch.no_grad():  # non-trivial BN statistics so a wrong mapping would show
        for m in base.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.0)
    sd = {f"model.base_model.{k}": v for k, v in base.state_dict().items()}
    sd["model.new_fc.weight"] = torch.randn(256, 2048) * 0.02
    sd["model.new_fc.bias"] = torch.randn(256) * 0.01
    for i, scale in enumerate(range(FRAME_COUNT, 1, -1)):  # i = 0 is the largest scale
        p = f"model.consensus.fc_fusion_scales.{i}"
        sd[f"{p}.1.weight"] = torch.randn(256, scale * 256) * 0.01
        sd[f"{p}.1.bias"] = torch.zeros(256)
        sd[f"{p}.3.weight"] = torch.randn(N_CLASSES, 256) * 0.01
        sd[f"{p}.3.bias"] = torch.zeros(N_CLASSES)
    return sd


def _save(path: Path, sd: dict, hparams: dict | None = None, **extra) -> Path:
    ckpt = {"epoch": 79, "global_step": 1000, "pytorch-lightning_version": "1.1.8", "state_dict": sd, **extra}
    if hparams is not None:
        ckpt["hyper_parameters"] = hparams
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory, state_dict) -> Path:
    return _save(tmp_path_factory.mktemp("ckpt") / "trn_rgb.ckpt", state_dict, _hparams())


def test_encodes_frames_of_any_size(ckpt_path: Path, state_dict) -> None:
    enc = TRNCheckpointEncoder(ckpt_path)
    assert isinstance(enc, FrameEncoder)
    assert enc.feature_dim == 256
    assert enc.preprocessing.mean == tuple(CKPT_MEAN) and enc.preprocessing.std == tuple(CKPT_STD)
    frames = np.random.default_rng(0).integers(0, 256, (3, 300, 400, 3), dtype=np.uint8)
    feats = enc.encode(frames, device="cpu", batch_size=2)
    assert feats.shape == (3, 256) and feats.dtype == torch.float32 and feats.device.type == "cpu"

    # Same numbers as new_fc(base_model(x)) built directly from the state dict.
    ref = ResNet50(include_fc=False)
    ref.load_state_dict({k[len("model.base_model."):]: v for k, v in state_dict.items() if k.startswith("model.base_model.")})
    fc = torch.nn.Linear(2048, 256)
    fc.load_state_dict({"weight": state_dict["model.new_fc.weight"], "bias": state_dict["model.new_fc.bias"]})
    x = Preprocessing(mean=tuple(CKPT_MEAN), std=tuple(CKPT_STD)).apply(torch.from_numpy(frames[1:2]))
    assert x.shape == (1, 3, 224, 224)
    with torch.inference_mode():
        expected = fc(ref.eval()(x))
    # batch of 2 vs one frame: float32 reordering through ResNet-50, 2^8 ulps of the largest feature
    torch.testing.assert_close(feats[1:2], expected, rtol=0, atol=reordering_tolerance(expected, RESNET50_ULPS))

    # Fingerprint: stable for the file, changes with the preprocessing config.
    assert enc.fingerprint() == TRNCheckpointEncoder(ckpt_path).fingerprint()
    assert enc.encode(frames[:0], device="cpu").shape == (0, 256)


def test_fingerprint_depends_on_config(tmp_path: Path, state_dict, ckpt_path: Path) -> None:
    other = _save(tmp_path / "other.ckpt", state_dict, _hparams(std=[0.229, 0.224, 0.225]))
    assert TRNCheckpointEncoder(other).fingerprint() != TRNCheckpointEncoder(ckpt_path).fingerprint()


def test_missing_hparams_fall_back_to_imagenet(tmp_path: Path, state_dict, caplog) -> None:
    path = _save(tmp_path / "nohp.ckpt", state_dict, None)
    with caplog.at_level(logging.WARNING, logger="core.backbones.trn_checkpoint"):
        enc = TRNCheckpointEncoder(path)
    assert enc.preprocessing.mean == IMAGENET_MEAN and enc.preprocessing.std == IMAGENET_STD
    assert "ImageNet" in caplog.text


def test_wrong_shape_names_the_key(tmp_path: Path, state_dict) -> None:
    sd = dict(state_dict)
    sd["model.base_model.layer3.1.conv2.weight"] = torch.zeros(256, 256, 1, 1)
    with pytest.raises(UserError) as err:
        TRNCheckpointEncoder(_save(tmp_path / "bad.ckpt", sd, _hparams()))
    msg = str(err.value)
    assert "layer3.1.conv2.weight" in msg and "(256, 256, 3, 3)" in msg and "Fix:" in msg


def test_missing_key_is_listed(tmp_path: Path, state_dict) -> None:
    sd = {k: v for k, v in state_dict.items() if k != "model.base_model.layer2.0.downsample.1.running_var"}
    with pytest.raises(UserError, match=r"missing keys: model\.base_model\.layer2\.0\.downsample\.1\.running_var"):
        TRNCheckpointEncoder(_save(tmp_path / "missing.ckpt", sd, _hparams()))


def test_tsn_checkpoint_without_relation_heads_is_refused(tmp_path: Path, state_dict) -> None:
    sd = {k: v for k, v in state_dict.items() if not k.startswith("model.consensus.")}
    with pytest.raises(UserError, match="relation heads"):
        TRNCheckpointEncoder(_save(tmp_path / "tsn.ckpt", sd, _hparams()))


def test_not_a_checkpoint(tmp_path: Path) -> None:
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(UserError, match=r"junk.ckpt is not a PyTorch checkpoint: it is a text file \(starts 'this is not") as exc:
        TRNCheckpointEncoder(junk)
    assert "safety" not in str(exc.value) and "Fix:" in str(exc.value)
    junk.write_bytes(b"<html><body>Not found</body></html>")
    with pytest.raises(UserError, match="an HTML/XML page"):
        check_trn_checkpoint(junk)
    with pytest.raises(UserError, match="does not exist"):
        TRNCheckpointEncoder(tmp_path / "nope.ckpt")
    with pytest.raises(UserError, match="is a directory, not a file") as exc:
        check_trn_checkpoint(tmp_path)
    assert "found: junk.ckpt" in str(exc.value)
    torch.save([1, 2, 3], tmp_path / "list.ckpt")
    with pytest.raises(UserError, match="not a checkpoint dict"):
        TRNCheckpointEncoder(tmp_path / "list.ckpt")
    torch.save({"state_dict": {"a": torch.zeros(1)}}, tmp_path / "small.ckpt")
    with pytest.raises(UserError, match="missing keys: model.base_model.conv1.weight"):
        TRNCheckpointEncoder(tmp_path / "small.ckpt")
    good = tmp_path / "list.ckpt"
    truncated = tmp_path / "truncated.ckpt"
    for cut in (40, len(good.read_bytes()) // 2):
        truncated.write_bytes(good.read_bytes()[:-cut])
        with pytest.raises(UserError, match=r"truncated.ckpt is truncated"):
            TRNCheckpointEncoder(truncated)


def _fake_modules(monkeypatch, names: dict[str, dict[str, type]]) -> None:
    for mod_name, classes in names.items():
        parts = mod_name.split(".")
        for i in range(1, len(parts)):  # pickle imports the parent packages too
            parent = ".".join(parts[:i])
            if parent not in sys.modules:
                monkeypatch.setitem(sys.modules, parent, types.ModuleType(parent))
        mod = types.ModuleType(mod_name)
        for cls_name, cls in classes.items():
            cls.__module__ = mod_name
            cls.__qualname__ = cls_name
            setattr(mod, cls_name, cls)
        monkeypatch.setitem(sys.modules, mod_name, mod)


def test_foreign_pickled_object_is_refused(tmp_path: Path, monkeypatch) -> None:
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    class Evil:
        pass

    _fake_modules(monkeypatch, {"evil_pkg": {"Evil": Evil}})
    torch.save({"state_dict": {}, "hyper_parameters": {"x": Evil()}}, tmp_path / "evil.ckpt")
    with pytest.raises(UserError, match=r"foreign objects \(evil_pkg\.Evil\)") as err:
        TRNCheckpointEncoder(tmp_path / "evil.ckpt")
    assert "Fix:" in str(err.value)
    torch.save({"state_dict": {}, "x": Payload()}, tmp_path / "print.ckpt")
    with pytest.raises(UserError, match="foreign objects"):
        TRNCheckpointEncoder(tmp_path / "print.ckpt")


def test_omegaconf_style_hparams_are_read_without_omegaconf(tmp_path: Path, monkeypatch) -> None:
    """Lightning pickles a DictConfig config; it is read through inert stand-ins."""

    class Metadata:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    class AnyNode:
        def __init__(self, val, parent=None):
            self._val, self._parent, self._metadata = val, parent, Metadata(key=None, optional=True)

    class DictConfig:
        def __init__(self, content):
            self._metadata = Metadata(object_type=dict, flags={})
            self._parent = None
            self._content = {k: _node(v, self) for k, v in content.items()}

    class ListConfig:
        def __init__(self, content):
            self._metadata = Metadata(object_type=list)
            self._parent = None
            self._content = [_node(v, self) for v in content]

    def _node(v, parent):
        if isinstance(v, dict):
            c = DictConfig(v)
        elif isinstance(v, list):
            c = ListConfig(v)
        else:
            return AnyNode(v, parent)
        c._parent = parent
        return c

    class ModelCheckpoint:
        pass

    _fake_modules(
        monkeypatch,
        {
            "omegaconf.dictconfig": {"DictConfig": DictConfig},
            "omegaconf.listconfig": {"ListConfig": ListConfig},
            "omegaconf.nodes": {"AnyNode": AnyNode},
            "omegaconf.base": {"Metadata": Metadata},
            "pytorch_lightning.callbacks.model_checkpoint": {"ModelCheckpoint": ModelCheckpoint},
        },
    )
    cfg = DictConfig(_hparams())
    path = tmp_path / "omega.ckpt"
    torch.save(
        {
            "state_dict": {"w": torch.ones(2)},
            "hyper_parameters": cfg,
            "hparams_type": DictConfig,
            "callbacks": {ModelCheckpoint: {"best_model_score": torch.tensor(0.5)}},
        },
        path,
    )
    for name in list(sys.modules):  # the reader must not need these modules
        if name.startswith(("omegaconf", "pytorch_lightning")):
            monkeypatch.delitem(sys.modules, name)
    ck = _read_checkpoint(path)
    from core.backbones.trn_checkpoint import _to_plain

    hp = _to_plain(ck["hyper_parameters"])
    assert hp == _hparams()
    pre = preprocessing_from_hparams(hp)
    assert pre.mean == tuple(CKPT_MEAN) and pre.std == tuple(CKPT_STD) and pre.scale_size == 256
    torch.testing.assert_close(ck["state_dict"]["w"], torch.ones(2))


def test_relation_heads(ckpt_path: Path) -> None:
    heads = load_trn_relation_heads(ckpt_path)
    assert sorted(heads) == list(range(2, FRAME_COUNT + 1))
    assert heads[3]["fc1.weight"].shape == (256, 3 * 256)
    assert heads[8]["fc2.weight"].shape == (N_CLASSES, 256)


def test_preprocessing_geometry() -> None:
    pre = Preprocessing()
    assert pre.resized_shape(256, 456) == (256, 456)  # EPIC frames: no resize
    assert pre.resized_shape(300, 400) == (256, 341)
    assert pre.resized_shape(400, 300) == (341, 256)
    # Horizontal ramp: the crop of a 256x456 frame starts at column round((456-224)/2) = 116.
    ramp = np.tile(np.arange(456, dtype=np.uint8)[None, :, None], (256, 1, 3))[None]
    x = Preprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)).apply(torch.from_numpy(ramp))
    assert x.shape == (1, 3, 224, 224)
    assert x[0, 0, 0, 0].item() == pytest.approx((116 % 256) / 255)


def test_random_thin_encoder_plumbing() -> None:
    enc = random_trn_encoder(seed=1, base_width=8)
    frames = np.zeros((2, 64, 80, 3), np.uint8)
    assert enc.encode(frames, device="cpu").shape == (2, 256)
    assert enc.fingerprint() == random_trn_encoder(seed=1, base_width=8).fingerprint()
    with pytest.raises(UserError):
        enc.encode(frames, device="tpu")


def test_status_check_is_cached_and_names_the_problem(ckpt_path: Path, tmp_path: Path, monkeypatch) -> None:
    import core.backbones.trn_checkpoint as trn

    summary = check_trn_checkpoint(ckpt_path)
    assert summary.startswith(f"TRN checkpoint {ckpt_path}") and "256-d features, 7 relation heads" in summary

    def boom(*a, **k):
        raise AssertionError("re-read although the file did not change")

    monkeypatch.setattr(trn, "read_trn_checkpoint", boom)
    assert check_trn_checkpoint(ckpt_path) == summary  # cached by (path, size, mtime)
    monkeypatch.undo()
    torch.save({"state_dict": {"model.base_model.conv1.weight": torch.zeros(1)}}, tmp_path / "layout.ckpt")
    with pytest.raises(UserError, match=r"missing keys: model.base_model.bn1.weight"):
        check_trn_checkpoint(tmp_path / "layout.ckpt")
