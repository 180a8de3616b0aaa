"""napari dock widgets of napari-chromagan: one small module per widget, no maths here."""
