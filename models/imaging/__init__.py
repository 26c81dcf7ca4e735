"""Chest CT studies, from DICOM files to a fixed-size volume a CNN can read (no torch).

``errors`` holds the exception tree with a dead-letter reason per error; ``geometry`` maps
voxel indices to patient coordinates; ``dicom`` reads one series of a study into Hounsfield
units with pydicom and checks it; ``preprocess`` resamples, windows, normalises and crops it.
Import from the modules: the package re-exports nothing. ``docs/imaging.md`` describes them.
"""
