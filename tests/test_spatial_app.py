"""Explore's map overlay (issue 20) through ``streamlit.testing.v1.AppTest`` on the small demo:
off, the page is as before; on, the enlarged frame carries its map with a legend and the
top frames by |ESV| appear with their maps, titled with the ESVs core computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from core.analysis.pointing import pointing_table, pointing_table_path, write_pointing_table  # noqa: E402
from core.explain.spatial import spatial_maps  # noqa: E402
from core.workspace import Workspace  # noqa: E402

MAIN = str(Path(__file__).resolve().parents[1] / "app" / "explorer.py")


def test_overlay_toggle_draws_the_maps(app_demo: Workspace) -> None:
    at = AppTest.from_file(MAIN, default_timeout=120).run()
    assert not at.exception and not at.error
    assert len(at.image) == 2  # off: the frame and the thumbnails, as before
    clip, n = at.sidebar.selectbox(key="pf_clip").value, at.slider(key="pf_n").value
    at.toggle(key="pf_map_on").set_value(True).run()
    assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
    assert at.radio(key="pf_map_method").value == "gradcam"
    maps = spatial_maps(app_demo, clip, task=app_demo.task_names[0], n_frames=n, method="gradcam",
                        frames=[int(np.argmax(np.abs(app_demo.explain(clip, n_frames=n).esvs)))])
    assert maps.cached  # the page computed and cached exactly these maps
    assert len(at.image) == 4  # + the legend and the strip of top frames
    strip = at.image[3].proto.imgs
    assert [i.caption for i in strip] == [f"#{int(f)} · ESV {e:+.4f}" for f, e in zip(maps.frame_indices[:3], maps.esvs[:3])]
    assert any("Grad-CAM" in c.value and "logit" in c.value for c in at.caption)
    assert any(b.label.startswith("gradcam maps as ZIP") for b in at.get("download_button"))  # the export offers the maps
    at.radio(key="pf_map_method").set_value("occlusion").run()
    assert not at.exception and not at.error
    assert at.selectbox(key="pf_map_colours_occlusion").value == "signed"
    assert any("Occlusion" in c.value and "probability" in c.value for c in at.caption)



def test_compare_methods_shows_the_written_pointing_table(app_demo: Workspace) -> None:
    """The page reads the table the command wrote (nothing recomputed on page load)."""
    path = pointing_table_path(app_demo)
    path.unlink(missing_ok=True)
    at = AppTest.from_file(MAIN, default_timeout=120).run()
    at.switch_page("../pages/compare_methods.py").run()
    assert not at.exception
    assert any("spatial --dataset demo-small --table" in i.value for i in at.info)
    table = pointing_table(app_demo, n_frames=4, limit=1, methods=("random", "centre"))
    write_pointing_table(app_demo, table)
    at.run()
    assert not at.exception
    shown = at.dataframe[-1].value
    np.testing.assert_allclose(shown["pointing_hit"].to_numpy(), 100 * table["pointing_hit"].to_numpy())
    assert any(str(path) in c.value for c in at.caption)
