"""Deep links: the view's settings live in the URL's query string.

The page is the URL's path (``/compare``, ``/overview``; Streamlit's navigation);
dataset, clip, frames, task, method, budget, seed, explained class and overlaid
classes are query parameters (``?clip=c3&n=4&task=noun&explain=predicted&ov_noun=2``: one
``ov_<task>`` parameter per task with overlaid classes, whatever tasks the dataset declares).
:func:`restore` copies them into the widgets' session state once, when a session
opens a link; :func:`publish` writes the current view back after the widgets are
drawn, so the address bar always links to what is on screen; :func:`link_control`
shows that link with a copy button.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable
from urllib.parse import urlencode, urlsplit

import streamlit as st

from app.state.session import OVERLAY_PREFIX

# URL parameter -> (session-state key, parser). Parsers raise ValueError on bad text.
_INT = int


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _flag(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError(text)
    return text == "1"


PARAMS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "dataset": ("pf_dataset", str),
    "clip": ("pf_clip", str),
    "n": ("pf_n", _INT),
    "start": ("pf_start", _INT),  # a window of n consecutive feature rows from this one (the Timeline's links)
    "task": ("pf_task", str),
    "model": ("pf_model", str),
    "method": ("pf_method", str),
    "sps": ("pf_sps", _INT),
    "iter": ("pf_iter", _INT),
    "budget": ("pf_budget", _INT),
    "seed": ("pf_seed", _INT),
    "both": ("pf_both", _flag),
}
OVERLAY = "ov_"  # ov_<task>=<class ids>  (session key pf_ov_<task>, app.state.overlay_key)
EXPLAIN = "explain"  # ground_truth | predicted | <class id>  (pf_target + pf_class)
RESTORED = "pf_url_restored"
PAGE_PATH = "pf_page_path"


def _with_overlays(tasks: Iterable[str]) -> dict[str, tuple[str, Callable[[str], Any]]]:
    """:data:`PARAMS` with an ``ov_<task>`` parameter for each of ``tasks``, before ``both``
    (where links have always had them)."""
    names = list(PARAMS)
    cut = names.index("both")
    overlays = {OVERLAY + t: (OVERLAY_PREFIX + t, _ints) for t in tasks}
    return {**{n: PARAMS[n] for n in names[:cut]}, **overlays, **{n: PARAMS[n] for n in names[cut:]}}


def restore() -> list[str]:
    """Once per session: copy the URL's parameters into session state (before any
    widget is drawn). Returns the parameters that could not be read (``n=abc``);
    values out of range are reset by the widgets' own checks."""
    if st.session_state.get(RESTORED):
        return []
    st.session_state[RESTORED] = True
    bad = []
    params = st.query_params
    linked_tasks = [name[len(OVERLAY):] for name in params if name.startswith(OVERLAY) and len(name) > len(OVERLAY)]
    for name, (key, parse) in _with_overlays(linked_tasks).items():
        if name in params:
            try:
                st.session_state[key] = parse(params[name])
            except ValueError:
                bad.append(f"{name}={params[name]}")
    if EXPLAIN in params:
        value = params[EXPLAIN]
        if value in ("ground_truth", "predicted"):
            st.session_state["pf_target"] = value
        else:
            try:
                st.session_state["pf_class"] = int(value)
                st.session_state["pf_target"] = "class"
            except ValueError:
                bad.append(f"{EXPLAIN}={value}")
    return bad


def current(keys: set[str] | None = None) -> dict[str, str]:
    """The URL parameters of the view in session state (``keys``: restrict to these
    parameter names)."""
    out: dict[str, str] = {}
    s = st.session_state
    overlaid_tasks = [str(k)[len(OVERLAY_PREFIX):] for k in s if str(k).startswith(OVERLAY_PREFIX)]
    for name, (key, _parse) in _with_overlays(overlaid_tasks).items():
        if keys is not None and name not in keys or key not in s or s[key] is None:
            continue
        value = s[key]
        if isinstance(value, bool):
            if value:
                out[name] = "1"
        elif isinstance(value, (list, tuple)):
            if value:
                out[name] = ",".join(str(int(v)) for v in value)
        else:
            out[name] = str(value)
    if keys is None or EXPLAIN in keys:
        target = s.get("pf_target")
        if target == "class" and s.get("pf_class") is not None:
            out[EXPLAIN] = str(int(s["pf_class"]))
        elif target:
            out[EXPLAIN] = str(target)
    return out


def publish(keys: set[str] | None = None) -> dict[str, str]:
    """Put the current view's parameters into the address bar (only when they changed)."""
    params = current(keys)
    if dict(st.query_params) != params:
        st.query_params.from_dict(params)
    return params


def url(params: dict[str, str]) -> str:
    """The full link: the server's address, this page's path and ``params``."""
    base = urlsplit(str(st.context.url or "http://localhost:8501/"))
    path = str(st.session_state.get(PAGE_PATH) or "")
    query = urlencode(params)
    return f"{base.scheme}://{base.netloc}/{path}" + (f"?{query}" if query else "")


def link_control(params: dict[str, str], where: Any = None) -> None:
    """A small "Link" popover holding the view's URL with a copy button."""
    with (where or st).popover("Link", icon=":material/link:", help="A link that reopens this view"):
        st.caption("Opening this link restores the dataset, clip, frames, task, method, budget, seed and classes.")
        st.code(url(params), language=None, wrap_lines=True)
