"""Data sets: the procedural Shapes set, captioned image folders, and the input pipeline."""
