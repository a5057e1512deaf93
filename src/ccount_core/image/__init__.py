"""Images in, prepared images out: readers, the crystal's outline, the one preparation pipeline.

:mod:`.io` reads stacks lazily (TIFF, folders of frames, Zarr), :mod:`.ellipse` fits the
crystal's outline, :mod:`.preprocess` turns a raw frame into the network's input with a saved
:class:`~ccount_core.image.preprocess.PreprocessConfig`, :mod:`.geometry` measures a crystal's
length and width, and :mod:`.kernels` holds the small Numba image kernels they share.
"""
