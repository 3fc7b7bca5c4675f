"""Spatial maps (issue 20): Grad-CAM and occlusion on hand-built models whose output depends
on one known region, Grad-CAM's gradients against finite differences, the chain backbone ->
feature -> multiscale model end to end on the small demo, the demo's object and hand boxes
(pixels unchanged), the pointing-game command and the maps command."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from core.analysis.pointing import centre_map, energy_in_box, pointing_hit, pointing_table_path
from core.attribution.base import ModelSpec
from core.attribution.spatial import FrameChain, GradCAM, Occlusion, chain_scores, frame_chain
from core.backbones.bninception import BNInception
from core.backbones.trn_checkpoint import Preprocessing, ResNetFCEncoder, random_trn_encoder
from core.cli import main
from core.data.demo import clip_rng, generate_clip, plan_demo_clips
from core.data.demo.boxes import box_mask, demo_boxes
from core.data.demo.render import render_clip
from core.errors import UserError
from core.explain.spatial import estimate_spatial, spatial_maps, top_positions
from core.models.families import get_family
from core.models.heads import MTRNHead

SIDE = 32
REGION = (slice(4, 12), slice(18, 26))  # rows, columns of the known region


class TinyBackbone(nn.Module):
    """conv (positive weights) -> ReLU -> pooled over ``pool`` (None: the whole map) -> linear: a frame feature."""

    def __init__(self, pool: tuple[slice, slice] | None, dim: int = 4, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(6, dim)
        with torch.no_grad():
            self.conv[0].weight.uniform_(0.0, 0.2)
            self.conv[0].bias.fill_(-0.3)  # a dark pixel activates nothing
        self.pool = pool
        self.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv(x)
        if self.pool is not None:
            a = a[:, :, self.pool[0], self.pool[1]]
        return self.fc(a.mean(dim=(2, 3)))


def tiny_chain(net: TinyBackbone) -> FrameChain:
    return FrameChain(net, lambda u8: u8.permute(0, 3, 1, 2).double() / 255.0, net.conv, "conv", lambda h, w: (0, 0, h, w))


def tiny_model(dim: int = 4, n_classes: int = 3, dtype: torch.dtype = torch.float32) -> ModelSpec:
    """A variable-length model: mean over frames -> linear (class 0 grows with every feature)."""
    torch.manual_seed(1)
    linear = nn.Linear(dim, n_classes).to(dtype)
    with torch.no_grad():
        linear.weight[0].uniform_(0.5, 1.0)
    return ModelSpec.variable_length(nn.Sequential(nn.Flatten(0, 0), _MeanFrames(), linear))


class _MeanFrames(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


def square_frame(region: tuple[slice, slice] = REGION, seed: int = 0) -> np.ndarray:
    """A dark noisy frame with a bright square on ``region``."""
    frame = np.random.default_rng(seed).integers(0, 30, (SIDE, SIDE, 3)).astype(np.uint8)
    frame[region] = 250
    return frame


def in_region(saliency: np.ndarray, region: tuple[slice, slice]) -> bool:
    y, x = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
    return region[0].start <= y < region[0].stop and region[1].start <= x < region[1].stop


# --------------------------------------------------------------------------- hand-built models


@pytest.mark.parametrize("region", [REGION, (slice(20, 28), slice(2, 10))])
def test_gradcam_peaks_on_the_only_bright_region(region: tuple[slice, slice]) -> None:
    net = TinyBackbone(pool=None, dtype=torch.float64)
    spec = tiny_model(dtype=torch.float64)
    features = torch.rand(3, 4, dtype=torch.float64)
    out = GradCAM().attribute(tiny_chain(net), spec, features, 1, square_frame(region), target=0)
    assert out.map.shape == (SIDE, SIDE) and out.map.max() > 0
    assert in_region(out.map, region)
    # the class score it explains is the model's own forward with that frame's feature in place
    with torch.no_grad():
        frame_feature = net(tiny_chain(net).inputs(square_frame(region)[None]))
        x = features.clone()
        x[1] = frame_feature[0]
        assert out.score == pytest.approx(float(spec.logits(x[None])[0, 0]), rel=1e-12)


def test_occlusion_changes_only_where_the_model_looks() -> None:
    """The backbone reads only REGION: patches away from it change nothing (map exactly 0 there)."""
    net = TinyBackbone(pool=REGION, dtype=torch.float64)
    frame = np.random.default_rng(3).integers(0, 256, (SIDE, SIDE, 3)).astype(np.uint8)
    frame[REGION] = 255
    method = Occlusion(patch=4, stride=2, batch_size=40)
    out = method.attribute(tiny_chain(net), tiny_model(dtype=torch.float64), torch.rand(2, 4, dtype=torch.float64), 0, frame, 0)
    assert in_region(out.map, REGION) and out.map.max() > 0
    far = np.ones((SIDE, SIDE), dtype=bool)
    far[REGION[0].start - 4 : REGION[0].stop + 4, REGION[1].start - 4 : REGION[1].stop + 4] = False
    assert np.abs(out.map[far]).max() == 0.0
    assert out.n_forward == method.n_patches(SIDE, SIDE) + 1 == 15 * 15 + 1


def test_gradcam_gradients_match_finite_differences() -> None:
    net = TinyBackbone(pool=None, dtype=torch.float64)
    chain, spec = tiny_chain(net), tiny_model(dtype=torch.float64)
    features, frame = torch.rand(3, 4, dtype=torch.float64), square_frame()
    for score in ("logit", "probability"):
        acts, grads, value = GradCAM(score).activations_and_gradients(chain, spec, features, 2, frame, 1)
        eps = 1e-6
        for k, y, x in [(0, 5, 20), (3, 8, 22), (5, 0, 0), (2, 30, 31)]:
            def shifted(delta: float) -> float:
                def bump(module: nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
                    output = output.clone()
                    output[0, k, y, x] += delta
                    return output
                handle = net.conv.register_forward_hook(bump)
                try:
                    with torch.no_grad():
                        return float(chain_scores(spec, features, 2, net(chain.inputs(frame[None])), 1, score)[0])
                finally:
                    handle.remove()
            numeric = (shifted(eps) - shifted(-eps)) / (2 * eps)
            assert float(grads[k, y, x]) == pytest.approx(numeric, rel=1e-5, abs=1e-9)
        assert float(value) == pytest.approx(shifted(0.0), rel=1e-12)


def test_resnet_chain_maps_only_the_centre_crop(one_torch_thread) -> None:
    """A thin random ResNet-50 layout: Grad-CAM hooks layer4, the map covers the 224 crop of a wide frame."""
    encoder = random_trn_encoder(seed=0, feature_dim=16, base_width=4)
    chain = frame_chain(encoder)
    assert chain.layer_name == "base_model.layer4"
    frame = np.random.default_rng(0).integers(0, 256, (128, 256, 3)).astype(np.uint8)
    top, left, h, w = chain.region(128, 256)
    assert (top, left, h, w) == (8, 72, 112, 112)  # 128x256 -> 256x512, centre 224 crop -> half of it in frame pixels
    spec = ModelSpec.multiscale(_mtrn_heads(16))
    out = Occlusion(patch=64, stride=64).attribute(chain, spec, torch.rand(3, 16), 1, frame, 0)
    assert out.map.shape == (128, 256)
    cam = GradCAM().attribute(chain, spec, torch.rand(3, 16), 1, frame, 0).map
    assert np.all(cam[:, :left] == 0) and np.all(cam[:, left + w :] == 0) and np.all(cam[:top] == 0) and np.all(cam[top + h :] == 0)


def _mtrn_heads(dim: int, n_classes: int = 4) -> list[nn.Module]:
    torch.manual_seed(2)
    return [MTRNHead(k, dim, 8, n_classes) for k in range(1, 4)]


def test_bad_settings_are_user_errors() -> None:
    with pytest.raises(UserError):
        Occlusion(patch=0)
    with pytest.raises(UserError):
        top_positions(np.zeros(4), 2, frames=[7])
    assert top_positions(np.array([0.1, -0.5, 0.3, 0.0]), 2, frames=[3, 1]) == [1, 2, 3]


# --------------------------------------------------------------------------- the demo


def test_demo_boxes_leave_every_pixel_unchanged() -> None:
    for spec in plan_demo_clips(48, size=64, seed=0)[:3]:
        frames, boxes = render_clip(spec, clip_rng(0, spec.index), boxes=True)
        assert np.array_equal(frames, generate_clip(spec, clip_rng(0, spec.index))[0])
        assert boxes.shape == (spec.n_frames, 2, 4)
        hand_seen = boxes[:, 1, 0] >= 0
        assert not hand_seen[: spec.key_start].any() and not hand_seen[spec.key_stop :].any() and hand_seen.any()
        assert (boxes[hand_seen, 1, 2:] > boxes[hand_seen, 1, :2]).all()


def test_multiscale_chain_matches_the_explained_model(demo_small, one_torch_thread) -> None:
    """backbone -> feature -> multiscale MTRN, differentiable end to end: Grad-CAM's class score is the
    model's own forward (its logit), its probability the explanation's p."""
    ws = demo_small
    clip = ws.clips("val").index[0]
    task = ws.task_names[0]
    n = min(4, int(ws.clips().loc[clip, "n_features"]))
    ex = ws.explain(clip, task=task, n_frames=n)
    rows = ws.feature_rows(clip, n)
    features = torch.from_numpy(ws.features(clip, rows))
    frames = ws.dataset.frames(clip, rows * ws.feature_stride)
    spec = ModelSpec.of(get_family("mtrn"), ws.heads(task).model("mtrn"))
    chain = frame_chain(ws.artifacts.encoder)
    assert chain.layer_name == "model.conv"
    for position in range(n):
        logit = GradCAM().attribute(chain, spec, features, position, frames[position], ex.explained_class)
        x = features.clone()
        x[position] = ws.artifacts.encoder.encode(frames[position][None])[0]
        with torch.no_grad():
            assert logit.score == pytest.approx(float(spec.logits(x[None])[0, ex.explained_class]), rel=1e-5, abs=1e-6)
        prob = GradCAM("probability").attribute(chain, spec, features, position, frames[position], ex.explained_class)
        assert prob.score == pytest.approx(ex.prob, abs=1e-5)
        assert np.isfinite(logit.map).all() and logit.map.shape == frames.shape[1:3]


def test_spatial_maps_are_cached_and_priced(demo_small, one_torch_thread) -> None:
    ws = demo_small
    clip = ws.clips("val").index[1]
    est = estimate_spatial(ws, clip, n_frames=4, method="occlusion", patch=16, stride=8)
    assert not est.cached and est.seconds > 0 and est.head_evaluations > 0
    seen: list[str] = []
    maps = spatial_maps(ws, clip, n_frames=4, method="occlusion", patch=16, stride=8, progress=lambda f, m: seen.append(m))
    assert maps.maps.shape[0] == 3 and seen and not maps.cached
    ex = ws.explain(clip, n_frames=4)
    assert list(maps.positions) == top_positions(ex.esvs, 3)
    np.testing.assert_allclose(maps.esvs, ex.esvs[maps.positions])
    again = spatial_maps(ws, clip, n_frames=4, method="occlusion", patch=16, stride=8)
    assert again.cached and np.array_equal(again.maps, maps.maps)
    assert estimate_spatial(ws, clip, n_frames=4, method="occlusion", patch=16, stride=8).cached


def test_pointing_command_on_the_small_demo(demo_small, one_torch_thread, capsys) -> None:
    assert main(["spatial", "--dataset", "demo-small", "--table", "--limit", "3", "--frames", "4", "--quiet"]) == 0
    table = pd.read_csv(pointing_table_path(demo_small))
    assert set(table["method"]) == {"gradcam", "occlusion", "random", "centre"}
    assert set(table["task"]) == set(demo_small.task_names)
    assert (table["frames"] > 0).all() and table[["pointing_hit", "energy_in_box", "box_share"]].apply(lambda c: c.between(0, 1)).all().all()
    assert "pointing hit" in capsys.readouterr().out
    # the centre map's row, recomputed by hand from the boxes and the ESVs' top frames
    hits = []
    for clip in demo_small.clips("val").index[:3]:
        ex = demo_small.explain(clip, task=demo_small.task_names[0], n_frames=4)
        boxes = demo_boxes(demo_small.source.root, clip)
        for f in ex.frame_indices[top_positions(ex.esvs, 3)]:
            if (boxes[f] >= 0).any():
                mask = box_mask(boxes[f], 64, 64)
                hits.append(pointing_hit(centre_map(64, 64), mask))
    row = table[(table["task"] == demo_small.task_names[0]) & (table["method"] == "centre")].iloc[0]
    assert row["frames"] == len(hits) and row["pointing_hit"] == pytest.approx(np.mean(hits))


def test_maps_command_writes_png_and_npy(demo_small, one_torch_thread, tmp_path) -> None:
    clip = demo_small.clips("val").index[2]
    assert main(["spatial", "--dataset", "demo-small", "--clip", clip, "--frames", "4", "--frame", "0", "--out", str(tmp_path), "--quiet"]) == 0
    maps = spatial_maps(demo_small, clip, n_frames=4, frames=[0])
    for index, saliency in zip(maps.frame_indices, maps.maps):
        stem = tmp_path / f"{clip}-{maps.task}-gradcam-frame{int(index)}"
        assert stem.with_suffix(".png").stat().st_size > 0
        np.testing.assert_array_equal(np.load(stem.with_suffix(".npy")), saliency)
    assert main(["spatial", "--dataset", "demo-small", "--quiet"]) == 2  # neither --clip nor --table


def test_pointing_metrics() -> None:
    saliency = np.zeros((4, 4))
    mask = np.zeros((4, 4), dtype=bool)
    mask[:2, :2] = True
    assert not pointing_hit(saliency, mask)  # flat: no point
    saliency[1, 1], saliency[3, 3] = 3.0, 1.0
    assert pointing_hit(saliency, mask) and energy_in_box(saliency, mask) == pytest.approx(0.75)


def test_bninception_gradcam_reads_the_last_inception_block(one_torch_thread) -> None:
    """BN-Inception's last block is no module: Grad-CAM splits the network at ``features``; its score is the model's forward."""
    torch.manual_seed(0)
    net = BNInception(16).eval()
    encoder = ResNetFCEncoder(net, 16, Preprocessing(scale_size=72, input_size=64, mean=(104.0, 117.0, 128.0), std=(1.0, 1.0, 1.0),
                                                     rescale=False, bgr=True), weights_id="random", name="tiny-bninception")
    chain = frame_chain(encoder)
    assert chain.split is not None and chain.layer_name == "features"
    spec = ModelSpec.multiscale(_mtrn_heads(16))
    features, frame = torch.rand(3, 16), np.random.default_rng(1).integers(0, 256, (72, 72, 3)).astype(np.uint8)
    out = GradCAM().attribute(chain, spec, features, 0, frame, 1)
    x = features.clone()
    x[0] = encoder.encode(frame[None], device="cpu")[0]
    with torch.no_grad():
        assert out.score == pytest.approx(float(spec.logits(x[None])[0, 1]), rel=1e-4, abs=1e-5)
    assert out.map.shape == (72, 72) and np.isfinite(out.map).all()
