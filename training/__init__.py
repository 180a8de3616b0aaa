"""ChromaGAN training for napari-chromagan: ``python -m training train|evaluate|export``.

Depends on the plugin's core (``napari_chromagan.model``, ``.color``, ``.checkpoint``); the core
never imports this package.
"""
