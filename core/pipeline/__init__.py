"""The build pipeline of one dataset: the TOML config (:mod:`.config`), the lazily
loaded artefacts (:mod:`.artifacts`) and the build steps with their runner (:mod:`.steps`).

May import: base modules, ``core.data`` (incl. sources), ``core.backbones``,
``core.features``, ``core.models``. Imported by ``core.workspace`` and above.
"""
