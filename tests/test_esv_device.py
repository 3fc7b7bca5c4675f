"""Exact ESVs on the compute device (issue 22): the service's device (asked, config, default),
results on the CPU equal to the CPU path's, and a cost model that knows the device's speed:
a faster device's calibration raises the most frames whose exact ESVs fit the limit, and the
frames slider offers them. The GPU itself is exercised by ``bench/gpu_check.sh``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import UserError
from core.explain import ExplanationService, Limits, estimate_cost
from core.explain.cost import EXACT_FRAMES_OFFERED, largest_exact_frames
from core.explain.devices import DeviceSpeed, compute_device, device_speed, using_device_speed
from core.pipeline.config import read_config, write_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# A stand-in calibration 1,000 times faster than the CPU constants (the ratio the reference
# figures show an H200 reaching at n = 20 is ~160): no GPU figure, only a faster device.
FAST = 1e-3


def fast(device: str = "cpu") -> DeviceSpeed:
    return DeviceSpeed(device, "a fast stand-in device", FAST, "a test's calibration")


# --------------------------------------------------------------------------- which device


def test_compute_device_asked_config_default(monkeypatch):
    assert os.environ["PLAYFAIR_ESV_DEVICE"] == "cpu"  # tests/conftest.py: the suite's numbers are the CPU's
    assert compute_device(None, {}) == torch.device("cpu")
    monkeypatch.delenv("PLAYFAIR_ESV_DEVICE")
    assert compute_device("cpu") == torch.device("cpu")
    assert compute_device(None, {"esv": {"device": "cpu"}}) == torch.device("cpu")
    default = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    assert compute_device(None, {}) == default and compute_device(None, {"esv": {"device": "auto"}}) == default
    assert compute_device("cpu", {"esv": {"device": "cuda:7"}}) == torch.device("cpu")  # asked wins over the config
    for bad in ({"esv": {"device": 3}}, {"esv": {"device": "tpu"}}):
        with pytest.raises(UserError) as err:
            compute_device(None, bad)
        assert "[esv] device" in err.value.problem and "under [esv] in the config file" in err.value.fix


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here")
def test_cuda_asked_without_one_names_the_fix():
    with pytest.raises(UserError, match="CUDA is not available") as err:
        compute_device("cuda")
    assert "cpu" in err.value.fix


# --------------------------------------------------------------------------- the cost model knows the device


def test_device_speed_is_recorded_per_device():
    assert device_speed("cpu").factor == 1.0  # the CPU constants themselves
    with using_device_speed(fast("standin:0")) as speed:
        assert device_speed("standin:0") is speed
        with using_device_speed(fast("cpu")):
            assert device_speed("cpu").factor == FAST
        assert device_speed("cpu").factor == 1.0  # the stand-in is gone with its block


@pytest.mark.parametrize("n_scales, n_classes", [(8, 97), (16, 300)])
def test_faster_device_raises_the_largest_exact_frames(n_scales, n_classes):
    shape = dict(n_classes=n_classes, n_scales=n_scales, hidden_dim=512)
    limits = Limits(seconds=1.0)
    speed = fast("standin:0")
    on_cpu = largest_exact_frames(limits, **shape)
    on_fast = largest_exact_frames(limits, **shape, device_factor=speed.factor)
    assert 12 <= on_cpu < on_fast == EXACT_FRAMES_OFFERED
    # exactly the first n over the limit on the CPU fits on the fast device, by the estimate itself
    cpu = estimate_cost("exact", n_frames=on_cpu + 1, **shape)
    quick = estimate_cost("exact", n_frames=on_cpu + 1, **shape, device_factor=speed.factor)
    assert cpu.over(limits) and quick.over(limits) is None and quick.seconds < cpu.seconds
    assert (quick.head_evaluations, quick.peak_bytes) == (cpu.head_evaluations, cpu.peak_bytes)
    # sampled methods run on the CPU: the device does not change their estimate
    sampled = dict(n_frames=16, samples_per_scale=8, **shape)
    assert estimate_cost("constructive", **sampled, device_factor=FAST) == estimate_cost("constructive", **sampled)
    # memory bounds the offer too: 20 frames need ~0.8 GB
    assert largest_exact_frames(Limits(seconds=1e6, peak_bytes=2**28), **shape, device_factor=FAST) < EXACT_FRAMES_OFFERED


def test_heads_are_copied_once_per_device_and_the_originals_stay():
    """ComputeDevice's copies, on torch's "meta" device (no data: a stand-in for a GPU on a CPU-only machine)."""
    from core.explain.devices import ComputeDevice
    from core.models import MTRNHead

    heads = [MTRNHead(k, 4, 3, 2) for k in (1, 2)]
    compute = ComputeDevice(provider=object(), asked="cpu")
    assert compute.device == torch.device("cpu") and compute.modules(("h",), heads, torch.device("cpu")) is heads
    meta = torch.device("meta")
    moved = compute.modules(("h",), heads, meta)
    assert compute.modules(("h",), heads, meta) is moved and [m.frame_count for m in moved] == [1, 2]
    assert all(p.is_meta for m in moved for p in m.parameters()) and not any(p.is_meta for m in heads for p in m.parameters())
    assert compute.modules(("other heads",), heads, meta) is not moved  # another key: its own copies
    compute.clear()
    assert compute.modules(("h",), heads, meta) is not moved


# --------------------------------------------------------------------------- the service on the device


@pytest.fixture(scope="module")
def ws(demo_small):
    return demo_small


def test_service_on_cpu_explicitly_equals_the_default(ws):
    clip = str(ws.clips("val").index[0])
    asked = ExplanationService(ws, disk=False, device="cpu")
    default = ExplanationService(ws, disk=False)
    assert asked.device == torch.device("cpu") and asked.run_device("mtrn").type == "cpu"
    for n in (4, 8):
        a, b = asked.explain(clip, task="verb", n_frames=n), default.explain(clip, task="verb", n_frames=n)
        assert a.esv_result.esvs.device.type == "cpu" and b.esv_result.esvs.device.type == "cpu"
        if default.device.type == "cpu":
            assert torch.equal(a.esv_result.esvs, b.esv_result.esvs) and torch.equal(a.esv_result.probs, b.esv_result.probs)
        else:
            torch.testing.assert_close(a.esv_result.esvs, b.esv_result.esvs, rtol=0, atol=1e-6)
    ids = [str(c) for c in ws.clips("val").index[:3]]
    for a, b in zip(asked.explain_many(ids, task="noun", n_frames=5), default.explain_many(ids, task="noun", n_frames=5)):
        torch.testing.assert_close(a.esv_result.esvs, b.esv_result.esvs, rtol=0, atol=0 if default.device.type == "cpu" else 1e-6)
    # sampled methods stay on the CPU wherever exact ESVs run
    assert asked.run_device("mtrn", "constructive").type == "cpu"


def test_service_estimate_and_offer_follow_the_device_speed(ws):
    clip = str(ws.clips("val").index[0])
    service = ExplanationService(ws, disk=False, device="cpu")
    limits = Limits(seconds=0.2)
    before = service.estimate(clip, task="verb", n_frames=12)
    offer = service.exact_frames(limits, task="verb")
    with using_device_speed(fast()):
        assert service.speed().label == "a fast stand-in device"
        after = service.estimate(clip, task="verb", n_frames=12)
        assert after.seconds < before.seconds and after.head_evaluations == before.head_evaluations
        assert offer < service.exact_frames(limits, task="verb") == EXACT_FRAMES_OFFERED
    assert service.exact_frames(limits, task="verb") == offer


def test_cache_key_names_a_device_other_than_the_cpu():
    """CPU keys are those written before devices; another device rounds differently: its own entries."""
    fields = dict(clip_id="c0", task="verb", model="mtrn", rows=np.arange(4), features=np.zeros((4, 2), np.float32), heads_key="h",
                  priors_hash="p", method="exact", samples_per_scale=None, iterations=1, seed=None)
    assert ExplanationService.key(**fields, device="cpu") == ExplanationService.key(**fields)
    assert ExplanationService.key(**fields, device="cuda") != ExplanationService.key(**fields)


def test_config_device_and_set_device(ws):
    service = ExplanationService(ws, disk=False)
    service.set_device("cpu")
    assert service.device == torch.device("cpu")
    with pytest.raises(UserError):
        service.set_device("not-a-device")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_service_matches_cpu_and_keeps_its_heads(ws):
    clip = str(ws.clips("val").index[0])
    gpu, cpu = ExplanationService(ws, disk=False, device="cuda"), ExplanationService(ws, disk=False, device="cpu")
    for model in ("mtrn", "tsn"):  # a multiscale and a variable-length game
        a, b = gpu.explain(clip, task="verb", n_frames=8, model=model), cpu.explain(clip, task="verb", n_frames=8, model=model)
        assert not a.esv_result.esvs.is_cuda and not a.esv_result.priors.is_cuda
        torch.testing.assert_close(a.esv_result.esvs, b.esv_result.esvs, rtol=0, atol=1e-6)
    ids = [str(c) for c in ws.clips("val").index[:3]]
    for a, b in zip(gpu.explain_many(ids, task="noun", n_frames=6), cpu.explain_many(ids, task="noun", n_frames=6)):
        assert not a.esv_result.esvs.is_cuda
        torch.testing.assert_close(a.esv_result.esvs, b.esv_result.esvs, rtol=0, atol=1e-6)
    family, model = gpu._family_model("verb", "mtrn")
    first = gpu._modules(family, model, "verb", 0, gpu.device)
    assert first is gpu._modules(family, model, "verb", 0, gpu.device) and next(first[0].parameters()).is_cuda
    assert next(model[0].parameters()).device.type == "cpu"  # the CPU heads stay where they were
    assert gpu.speed().device.startswith("cuda") and gpu.speed().factor > 0


# --------------------------------------------------------------------------- the frames slider


def test_slider_offers_twenty_frames_on_a_fast_device(app_demo):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    from app import state

    path = Path(os.environ["PLAYFAIR_CONFIG"])
    saved = read_config(path)
    write_config(path, {**saved, "limits": {"seconds": 0.1}})  # below exact ESVs of 16 frames on the CPU constants (Setup's least)
    state.reset_workspaces()
    try:
        app = str(Path(__file__).resolve().parents[1] / "app" / "explorer.py")
        clip = next(str(c) for c, row in app_demo.clips().iterrows() if row["n_features"] >= EXACT_FRAMES_OFFERED)
        at = AppTest.from_file(app, default_timeout=120).run()
        at.sidebar.selectbox(key="pf_clip").set_value(clip).run()
        slider = at.slider(key="pf_n")
        assert slider.max == 16 and "CPU" in slider.help and "0.1 s" in slider.help  # never fewer than today
        with using_device_speed(fast()):
            at.run()
            slider = at.slider(key="pf_n")
            assert slider.max == EXACT_FRAMES_OFFERED and "a fast stand-in device" in slider.help and "0.1 s" in slider.help
            at.slider(key="pf_n").set_value(EXACT_FRAMES_OFFERED).run()
            assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
            drawn = "\n".join(m.value for m in at.markdown)
            setup = at.switch_page("../pages/setup.py").run()
            assert any("Exact ESVs run on **a fast stand-in device**" in c.value for c in setup.caption)  # the device, named
        ex = app_demo.explain(clip, task="verb", n_frames=EXACT_FRAMES_OFFERED)
        assert ex.esv_result.exact and len(ex.esvs) == EXACT_FRAMES_OFFERED
        assert f"{ex.prob - ex.prior:+.6f}" in drawn  # the page drew these exact ESVs
        np.testing.assert_allclose(ex.esvs.sum(), ex.prob - ex.prior, atol=1e-9)
    finally:
        write_config(path, saved)
        state.reset_workspaces()


def test_cli_esvs_device(ws, tmp_path, capsys):
    from core.analysis.batch import read_results
    from core.cli import main

    out = tmp_path / "esvs.parquet"
    args = ["esvs", "--dataset", "demo-small", "--frames", "4", "--limit", "2", "--out", str(out), "--quiet"]
    assert main([*args, "--device", "cpu"]) == 0
    default = tmp_path / "default.parquet"
    assert main([*args[:-3], "--out", str(default), "--quiet"]) == 0
    a, b = read_results(out), read_results(default)
    np.testing.assert_allclose(a.filter(like="esv").to_numpy(dtype=float), b.filter(like="esv").to_numpy(dtype=float), atol=1e-6)
    capsys.readouterr()
    assert main([*args, "--device", "tpu", "--force"]) == 2
    assert "Unknown device 'tpu'" in capsys.readouterr().err
