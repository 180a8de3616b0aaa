"""Colour: CIE L*a*b* <-> sRGB, the gamut policy and the one renderer of displayable colour."""

from napari_chromagan.moved_modules import old_module_getattr

# napari_chromagan.color was a module before the subpackages: its names still resolve, with a warning
__getattr__ = old_module_getattr(__name__, "color.lab")
