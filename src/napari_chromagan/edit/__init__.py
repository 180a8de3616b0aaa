"""Edits on a colourisation result: chroma blending and colour hints."""
