"""Our head files round-trip; Play Fair fork head folders load; bad files give UserErrors."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from core.errors import UserError
from core.models.families.mtrn import read_fork_heads
from core.models.io import HeadSet, load_fork_heads, load_head_set, save_head_set
from core.models import MTRNHead, TSNHead


def _fork_state(k: int, task: str, d: int = 6, h: int = 5, c: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """What the fork's train_mtrn.py saves: V_MTRN/N_MTRN state_dict, un-prefixed keys."""
    g = torch.Generator().manual_seed(seed + k)
    return {
        "fc1.weight": torch.randn(h, k * d, generator=g),
        "fc1.bias": torch.randn(h, generator=g),
        f"fc2_{task}.weight": torch.randn(c, h, generator=g),
        f"fc2_{task}.bias": torch.randn(c, generator=g),
    }


def _write_fork(folder, task: str, scales=(1, 2, 3), **kw) -> None:
    folder.mkdir(exist_ok=True)
    for k in scales:
        torch.save(_fork_state(k, task, **kw), folder / f"mtrn-frames={k}-type={task}.pt")


def test_round_trip_weights_only(tmp_path):
    torch.manual_seed(0)
    hs = HeadSet("noun", {"mtrn": [MTRNHead(k, 6, 5, 4, dropout=0.3) for k in (1, 2)], "tsn": TSNHead(6, 4, 0, dropout=0.2)},
                 pd.DataFrame({"task": ["noun"], "top1": [0.5]}), {"source": "trained", "n": 3})
    path = save_head_set(hs, tmp_path / "h" / "noun.pt")
    raw = torch.load(path, weights_only=True)  # plain containers only
    assert raw["format"] == "playfair-heads" and raw["task"] == "noun"
    back = load_head_set(path)
    x = torch.randn(2, 2, 6)
    hs.eval()
    torch.testing.assert_close(back.model("mtrn")[1](x), hs.model("mtrn")[1](x))
    torch.testing.assert_close(back.model("tsn")(x), hs.model("tsn")(x))
    assert back.meta == {"source": "trained", "n": 3} and back.accuracy["top1"].tolist() == [0.5]
    assert len(back.model("mtrn")) == 2 and back.n_classes == 4 and back.model("tsn").feature_dim == 6


def test_load_head_set_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_head_set(tmp_path / "nope.pt")
    torch.save({"fc1.weight": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(UserError, match="not a Play Fair explorer head file"):
        load_head_set(tmp_path / "foreign.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="Cannot read"):
        load_head_set(tmp_path / "junk.pt")


def test_fork_heads_load_and_compute_like_the_fork(tmp_path):
    _write_fork(tmp_path, "verb")
    _write_fork(tmp_path, "noun", c=4)
    hs = load_fork_heads(tmp_path, "verb")
    assert [h.frame_count for h in hs.model("mtrn")] == [1, 2, 3] and "tsn" not in hs.models
    assert (hs.model("mtrn")[0].feature_dim, hs.model("mtrn")[0].hidden_dim, hs.n_classes) == (6, 5, 3)
    st = _fork_state(3, "verb")
    x = torch.randn(2, 3, 6)
    # the fork's forward: view(-1, k*D) -> relu(fc1) -> fc2_verb
    ref = torch.relu(x.reshape(2, -1) @ st["fc1.weight"].T + st["fc1.bias"]) @ st["fc2_verb.weight"].T + st["fc2_verb.bias"]
    torch.testing.assert_close(hs.model("mtrn")[2](x), ref)
    assert load_fork_heads(tmp_path, "noun").n_classes == 4
    assert len(read_fork_heads(tmp_path, "verb", scales=2)) == 2


def test_fork_heads_tolerate_wrappers_and_prefixes(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    for k in (1, 2):
        state = {f"module.{n}": v for n, v in _fork_state(k, "noun").items()}
        torch.save({"state_dict": state}, tmp_path / f"mtrn-frames={k}-type=noun.pt")
    assert len(load_fork_heads(tmp_path, "noun").model("mtrn")) == 2


def test_fork_heads_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_fork_heads(tmp_path / "missing", "verb")
    with pytest.raises(UserError, match="No files"):
        load_fork_heads(tmp_path, "verb")
    _write_fork(tmp_path, "verb", scales=(1, 3))
    with pytest.raises(UserError, match=r"mtrn-frames=2-type=verb\.pt"):
        load_fork_heads(tmp_path, "verb")
    with pytest.raises(UserError, match="lacks"):
        read_fork_heads(tmp_path, "verb", scales=4)

    bad = tmp_path / "bad"
    _write_fork(bad, "verb", scales=(1, 2))
    state = _fork_state(2, "verb")
    state["fc1.weight"] = torch.randn(5, 13)  # 13 is not 2 * D
    torch.save(state, bad / "mtrn-frames=2-type=verb.pt")
    with pytest.raises(UserError, match=r"mtrn-frames=2-type=verb\.pt has inconsistent shapes"):
        load_fork_heads(bad, "verb")

    mixed = tmp_path / "mixed"
    _write_fork(mixed, "verb", scales=(1,))
    torch.save(_fork_state(2, "verb", h=7), mixed / "mtrn-frames=2-type=verb.pt")
    with pytest.raises(UserError, match="same training run"):
        load_fork_heads(mixed, "verb")

    swapped = tmp_path / "swapped"
    swapped.mkdir()
    torch.save(_fork_state(1, "noun"), swapped / "mtrn-frames=1-type=verb.pt")
    with pytest.raises(UserError, match="fc2_noun"):
        load_fork_heads(swapped, "verb")
    # Fork files name their task, so any task a dataset declares can come from them; a task
    # without files is named (which tasks exist is the dataset's to check, not this reader's).
    _write_fork(tmp_path / "other", "action", scales=(1, 2))
    assert load_fork_heads(tmp_path / "other", "action").max_frames == 2
    with pytest.raises(UserError, match=r"No files mtrn-frames=<k>-type=action\.pt"):
        load_fork_heads(swapped, "action")
