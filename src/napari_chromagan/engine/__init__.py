"""The colourisation engine: any gray array, stack or folder of files in, colour out."""
