"""Pure drawing helpers for the pages, one module per job: :mod:`.tables` (colours,
table shapers, number formats), :mod:`.esv` (ESV and top-k charts), :mod:`.analysis`
(comparison, sweep and summary charts), :mod:`.images` (thumbnails, data URLs) and
:mod:`.exports` (SVG/PNG). No Streamlit here (tests/test_charts.py checks them without
a server); the Streamlit glue lives in :mod:`app.state`. Nothing here computes ESVs or
metrics: that is core's job; these functions only reshape core's results for drawing.
"""

from __future__ import annotations

from app.charts.tables import (  # noqa: F401
    POSITIVE, NEGATIVE, NEUTRAL, esv_frame_table, topk_table, clip_labels, comparison_table, ColumnFormats,
    METHOD_SUMMARY_FORMATS, CLASS_SUMMARY_FORMATS, KEY_FRAME_FORMATS, SWEEP_PREDICTION_FORMATS, same_format,
)
from app.charts.esv import (  # noqa: F401
    FRAME_SELECTION, Spec, sign_color, ESV_DATA, ESV_FIELDS, ESV_ERROR_FIELDS, IMAGE_FIELD, esv_bar_altair,
    esv_bar_chart, with_errors, selected_value, selected_position, CLASS_SELECTION, EXPLAINED_COLOR,
    OVERLAY_COLORS, overlay_table, esv_overlay_chart, topk_rows, TOPK_DATA, topk_altair, topk_chart,
    selected_class,
    efficiency_badge, verdict_markdown,
)
from app.charts.analysis import (  # noqa: F401
    comparison_chart, sweep_chart, accuracy_chart, position_chart, frames_sweep_chart, class_summary_chart,
    method_scores_chart, attribution_curve_chart,
)
from app.charts.images import (  # noqa: F401
    image_data_url, picture_url, esv_colors, upscale, tint, tinted_thumbnails,
)
from app.charts.exports import (  # noqa: F401
    Chart, chart_svg, chart_png, titled,
)
