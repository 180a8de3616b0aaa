"""Files: image decoding and encoding, atomic writes and the provenance record."""
