"""Analyses built on the explanation service: batch ESVs of a split, exact vs
approximate comparisons, dataset overviews and attribution faithfulness.

Layering: may import ``core.explain``, ``core.attribution``, ``core.esv`` and the base
modules; takes a workspace as an argument (``batch``, ``compare``, ``overview`` and
``faithfulness`` never import ``core.workspace``; only ``faithfulness_cli`` builds one).
"""
