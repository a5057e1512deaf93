"""napari_ccount: the napari plugin for ccount.

A thin layer over :mod:`ccount_core`: widgets gather parameters, run the core's functions in
worker threads and show the results as layers, tables and plots.
"""

from ccount_core import __version__

__all__ = ["__version__"]
