"""A small shop, instrumented by configuration only: nothing here imports flext_ctx_aspects.

``python -m flext_ctx_aspects run --config examples/shop.toml --trace shop-trace.json --
python examples/shop_demo.py`` runs it with ``timed`` and ``with_correlation`` applied to
every function and method of this package, in the main process and in its worker processes.
"""
