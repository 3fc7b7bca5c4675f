"""The Play Fair SSv2 release's loaders on generated stand-ins (tests/released_standins.py):
BN-Inception and the TSN ResNet-50 backbones, the feature models as MTRN / TSN heads, and
every loader's messages for a bad file."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from core.backbones.base import FrameEncoder
from core.backbones.bninception import BNINCEPTION_PREPROCESSING, bninception_state_shapes, load_bninception
from core.backbones.playfair_release import RELEASED_FILES, read_release_state, released_file_status
from core.backbones.registry import backbone_kinds, load_backbone
from core.backbones.tsn_resnet50 import load_tsn_resnet50, tsn_resnet50_state_shapes
from core.errors import UserError
from core.models.families import get_family
from core.models.io import load_fork_heads
from core.models.released import load_released_mtrn, read_released_mtrn, read_released_trn, read_released_tsn
from tests import released_standins as standins


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in release: ``backbones/trn.pth`` and every ``features/`` file (``backbones/tsn.pth``,
    96 MB, is written by the soak tests that need it)."""
    root = tmp_path_factory.mktemp("release") / "checkpoints"
    standins.write_backbones(root, seed=1, tsn=False)
    return standins.write_features(root, seed=2)


# ---------------------------------------------------------------- backbones


def test_bninception_loads_with_the_released_keys_and_shapes(release: Path) -> None:
    path = release / "backbones" / "trn.pth"
    encoder = load_bninception(path)
    net = encoder.network
    saved = torch.load(path, weights_only=True)["state_dict"]
    loaded = net.state_dict()
    assert list(loaded) == list(bninception_state_shapes())
    assert set(loaded) == set(saved)
    assert {k: tuple(v.shape) for k, v in loaded.items()} == {k: tuple(v.shape) for k, v in saved.items()}
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    assert loaded["last_linear.weight"].shape == (256, 1024) and encoder.feature_dim == 256
    # 485 tensors, 10,552,672 float32 values (running statistics included): the 40 MiB the release README lists
    assert len(saved) == 485 and sum(v.numel() for k, v in saved.items() if not k.endswith("tracked")) == 10_552_672


def test_bninception_same_input_twice_in_float64_is_equal(release: Path) -> None:
    net = copy.deepcopy(load_bninception(release / "backbones" / "trn.pth").network).double().eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 50
    with torch.inference_mode():
        first, second = net(x), net(x)
    assert first.shape == (2, 256) and first.dtype == torch.float64
    assert (first - second).abs().max().item() <= 1e-6
    assert first.std() > 0  # a real output, not a constant


def test_bninception_preprocessing_is_bgr_0_255_minus_the_mean() -> None:
    frame = np.empty((1, 300, 400, 3), dtype=np.uint8)
    frame[...] = (200, 100, 50)  # R, G, B
    x = BNINCEPTION_PREPROCESSING.apply(torch.from_numpy(frame))
    assert x.shape == (1, 3, 224, 224)
    torch.testing.assert_close(x[0, :, 100, 100], torch.tensor([50 - 104.0, 100 - 117.0, 200 - 128.0]))


def test_bninception_encoder_encodes_frames(release: Path) -> None:
    encoder = load_bninception(release / "backbones" / "trn.pth")
    frames = np.random.default_rng(0).integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    features = encoder.encode(frames, device="cpu")
    with torch.inference_mode():
        direct = encoder.network(BNINCEPTION_PREPROCESSING.apply(torch.from_numpy(frames)))
    assert features.shape == (2, 256)
    torch.testing.assert_close(features, direct)


def test_the_backbone_kinds_load_through_the_registry(release: Path) -> None:
    assert {"bninception", "tsn-resnet50"} <= set(backbone_kinds())
    encoder = load_backbone("bninception", release / "backbones" / "trn.pth")
    assert isinstance(encoder, FrameEncoder) and encoder.name == "ssv2-bninception" and encoder.feature_dim == 256


def test_bninception_loads_the_wrappings_the_play_fair_code_reads(tmp_path: Path) -> None:
    state = standins.bninception_state(seed=3, num_batches_tracked=False)  # older PyTorch wrote no counters
    for i, ck in enumerate([{"model": state}, {f"module.{k}": v for k, v in state.items()}]):
        torch.save(ck, tmp_path / f"trn{i}.pth")
        net = load_bninception(tmp_path / f"trn{i}.pth").network
        assert torch.equal(net.state_dict()["inception_5b_pool_proj.weight"], state["inception_5b_pool_proj.weight"])


@pytest.mark.soak  # a 96 MB ResNet-50 file: seconds to write and read
def test_tsn_backbone_loads_with_the_released_keys(tmp_path: Path) -> None:
    path = standins.write_backbones(tmp_path, seed=1) / "backbones" / "tsn.pth"
    encoder = load_tsn_resnet50(path)
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert set(saved) == set(tsn_resnet50_state_shapes())
    loaded = encoder.network.state_dict()
    assert torch.equal(loaded["new_fc.weight"], saved["last_linear.weight"])
    assert torch.equal(loaded["base_model.layer4.2.conv3.weight"], saved["layer4.2.conv3.weight"])
    assert encoder.encode(np.zeros((1, 40, 40, 3), dtype=np.uint8), device="cpu").shape == (1, 256)


# ---------------------------------------------------------------- feature models


def _direct_mlp(state: dict[str, torch.Tensor], x: torch.Tensor, prefix: str = "") -> torch.Tensor:
    """The release's feature TRN from its raw tensors: ``(B, k, 256)`` -> ``(B, C)``."""
    hidden = torch.relu(x.flatten(1) @ state[prefix + "model.1.weight"].T + state[prefix + "model.1.bias"])
    return hidden @ state[prefix + "model.3.weight"].T + state[prefix + "model.3.bias"]


def _direct_multiscale(state: dict[str, torch.Tensor], x: torch.Tensor, nmax: int) -> torch.Tensor:
    """``(n, 256)`` -> ``(C,)``: mean over scales of the mean over ordered s-subsets, from raw tensors."""
    n = x.shape[0]
    per_scale = []
    for s in range(1, min(n, nmax) + 1):
        subsets = torch.stack([x[list(c)] for c in itertools.combinations(range(n), s)])
        per_scale.append(_direct_mlp(state, subsets, f"single_scale_models.{s - 1}.").mean(0))
    return torch.stack(per_scale).mean(0)


def test_trn_files_give_the_direct_evaluation(release: Path) -> None:
    for k in (1, 5, 16):
        state = read_release_state(release / "features" / f"trn_{k}_frames.pth", f"features/trn_{k}_frames.pth")
        head = read_released_trn(release / "features" / f"trn_{k}_frames.pth")
        xs = torch.randn(3, k, 256, generator=torch.Generator().manual_seed(k))
        assert (head.frame_count, head.hidden_dim, head.n_classes) == (k, 256, 174)
        with torch.inference_mode():
            torch.testing.assert_close(head(xs), _direct_mlp(state, xs), rtol=0, atol=1e-5)


@pytest.mark.parametrize("nmax", [8, 16])
def test_mtrn_files_give_the_direct_evaluation(release: Path, nmax: int) -> None:
    path = release / "features" / f"mtrn_{nmax}_frames.pth"
    state = read_release_state(path, f"features/mtrn_{nmax}_frames.pth")
    heads = read_released_mtrn(path)
    assert [h.frame_count for h in heads] == list(range(1, nmax + 1)) and heads[0].n_classes == 174
    family = get_family("mtrn")
    for n in (3, 9):
        x = torch.randn(n, 256, generator=torch.Generator().manual_seed(n))
        with torch.inference_mode():
            ours = family.logits(heads, x[None])[0]
        torch.testing.assert_close(ours, _direct_multiscale(state, x, nmax), rtol=0, atol=1e-5)


def test_tsn_file_gives_the_direct_evaluation_with_its_input_relu(release: Path) -> None:
    state = read_release_state(release / "features" / "tsn.pth", "features/tsn.pth")
    head = read_released_tsn(release / "features" / "tsn.pth")
    x = torch.randn(2, 7, 256, generator=torch.Generator().manual_seed(3))
    direct = (torch.relu(x) @ state["classifier.weight"].T + state["classifier.bias"]).mean(1)
    with torch.inference_mode():
        torch.testing.assert_close(head(x), direct, rtol=0, atol=1e-5)
    family = get_family("tsn")
    again = family.from_state(family.state(head))  # the head file keeps the input ReLU
    with torch.inference_mode():
        torch.testing.assert_close(again(x), direct, rtol=0, atol=1e-5)


def test_a_release_folder_is_a_head_set_of_one_task(release: Path) -> None:
    heads = load_fork_heads(release, "action")
    assert set(heads.models) == {"mtrn", "tsn"} and heads.n_classes == 174
    assert heads.max_frames == 16 and heads.n_scales("mtrn") == 16
    assert len(load_released_mtrn(release, "mtrn_8_frames")) == 8
    trn = load_released_mtrn(release / "features", "trn")
    assert len(trn) == 16 and torch.equal(trn[4].fc1.weight, read_released_trn(release / "features" / "trn_5_frames.pth").fc1.weight)
    assert released_file_status(release) == ([n for n in RELEASED_FILES if n != "backbones/tsn.pth"], ["backbones/tsn.pth"])
    assert get_family("mtrn").external_files(release) and get_family("tsn").external_files(release)


def test_release_file_status_names_the_missing_files(tmp_path: Path) -> None:
    standins.write_features(tmp_path, trn_frames=range(1, 3), mtrn=(8,), tsn=False, hidden=8, classes=5)
    present, missing = released_file_status(tmp_path)
    assert present == ["features/trn_1_frames.pth", "features/trn_2_frames.pth", "features/mtrn_8_frames.pth"]
    assert "backbones/trn.pth" in missing and "features/mtrn_16_frames.pth" in missing and "features/tsn.pth" in missing


# ---------------------------------------------------------------- messages

Loader = Callable[[Path], object]
LOADERS: dict[str, tuple[Loader, Callable[[], dict[str, torch.Tensor]], str]] = {
    "backbones/trn.pth": (load_bninception, lambda: standins.bninception_state(4), "inception_3a_1x1.weight"),
    "features/trn_3_frames.pth": (read_released_trn, lambda: standins.trn_state(3, 4), "model.1.weight"),
    "features/mtrn_8_frames.pth": (read_released_mtrn, lambda: standins.mtrn_state(8, 4), "single_scale_models.2.model.1.weight"),
    "features/tsn.pth": (read_released_tsn, lambda: standins.tsn_feature_state(4), "classifier.weight"),
}


def _problem(loader: Loader, path: Path) -> UserError:
    with pytest.raises(UserError) as info:
        loader(path)
    assert info.value.fix, "every message names a fix"
    return info.value


TSN_BACKBONE = (load_tsn_resnet50, lambda: standins.tsn_backbone_state(4), "layer1.0.conv1.weight")


@pytest.mark.parametrize("name", [*LOADERS, pytest.param("backbones/tsn.pth", marks=pytest.mark.soak)])
def test_each_loader_says_what_is_wrong_with_a_file(tmp_path: Path, name: str) -> None:
    loader, make_state, key = LOADERS.get(name, TSN_BACKBONE)
    path = tmp_path / name
    path.parent.mkdir(parents=True)
    error = _problem(loader, path)
    assert "does not exist" in str(error) and "download.sh" in error.fix
    small = {"state_dict": {"x": torch.zeros(1000)}}
    torch.save(small, path)
    error = _problem(loader, path.parent)  # the folder holding it
    assert "is a directory" in str(error) and Path(error.fix.split(": ", 1)[1]) == path  # the fix names the file itself
    path.write_text("<html>Dropbox error</html>")
    assert "not a PyTorch checkpoint" in str(_problem(loader, path))
    torch.save(small, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert "truncated" in str(_problem(loader, path))
    torch.save({"optimizer": {}, "epoch": 3}, path)
    assert "holds no state dict" in str(_problem(loader, path))
    state = make_state()
    for edit, expected in (("drop", "missing keys"), ("extra", "unexpected keys"), ("shape", "wrong shapes")):
        bad = dict(state)
        if edit == "drop":
            del bad[key]
        elif edit == "extra":
            bad["fc_extra.weight"] = torch.zeros(3)
        else:
            bad[key] = torch.zeros(*bad[key].shape[:-1], bad[key].shape[-1] + 1)
        torch.save({"state_dict": bad}, path)
        error = _problem(loader, path)
        assert expected in str(error) and ("fc_extra.weight" if edit == "extra" else key) in str(error), str(error)
        assert "download.sh" in error.fix


@pytest.mark.soak  # writes the 96 MB ResNet-50 layout
def test_the_other_backbone_file_is_named(tmp_path: Path) -> None:
    torch.save({"state_dict": standins.tsn_backbone_state(5)}, tmp_path / "trn.pth")
    assert "backbones/tsn.pth" in str(_problem(load_bninception, tmp_path / "trn.pth"))
    torch.save({"state_dict": standins.bninception_state(5)}, tmp_path / "tsn.pth")
    assert "backbones/trn.pth" in str(_problem(load_tsn_resnet50, tmp_path / "tsn.pth"))


def test_a_multiscale_file_given_as_one_head_is_named(tmp_path: Path) -> None:
    torch.save({"state_dict": standins.mtrn_state(2, hidden=8, classes=5)}, tmp_path / "trn_2_frames.pth")
    assert "that is a features/mtrn_<n>_frames.pth" in str(_problem(read_released_trn, tmp_path / "trn_2_frames.pth"))


def test_training_checkpoints_with_their_arguments_load_and_foreign_objects_do_not(tmp_path: Path) -> None:
    standins.write_features(tmp_path, trn_frames=range(2, 3), mtrn=(), tsn=False)
    saved = torch.load(tmp_path / "features" / "trn_2_frames.pth", weights_only=False)
    assert {"model", "optimizer", "args"} <= set(saved)  # a training checkpoint, arguments included
    assert read_released_trn(tmp_path / "features" / "trn_2_frames.pth").frame_count == 2
    torch.save({"state_dict": standins.tsn_feature_state(), "where": Path("/data")}, tmp_path / "tsn.pth")  # config objects: inert
    assert read_released_tsn(tmp_path / "tsn.pth").n_classes == standins.CLASSES
    torch.save({"state_dict": standins.tsn_feature_state(), "obj": np.dtype("float32")}, tmp_path / "bad.pth")
    assert "foreign objects" in str(_problem(read_released_tsn, tmp_path / "bad.pth"))
