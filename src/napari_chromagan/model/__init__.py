"""The networks: the ChromaGAN generator (both trunk families) and its building blocks."""

from napari_chromagan.moved_modules import old_module_getattr

# napari_chromagan.model was a module before the subpackages: its names still resolve, with a warning
__getattr__ = old_module_getattr(__name__, "model.generator")
