"""ChromaGAN training for napari-chromagan: ``python -m training train|evaluate|export``.

Depends on the plugin's core (``napari_chromagan.model.generator``, ``.color``, ``.checkpoint``); the core
never imports this package.
"""
