"""Plate perception: detect, rectify, read through the plate grammar, colour."""
