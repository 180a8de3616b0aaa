"""The napari side: layers, their stored results, the writer, sample data and the dock widgets (in ``_widgets``, the only Qt code)."""
