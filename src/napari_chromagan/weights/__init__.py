"""Weights: the checkpoint format, where weights are found, the registry and its downloads, and the import of the authors' Keras files."""

from napari_chromagan.moved_modules import old_module_getattr

# napari_chromagan.weights was a module before the subpackages: its names still resolve, with a warning
__getattr__ = old_module_getattr(__name__, "weights.lookup")
