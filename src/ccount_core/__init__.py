"""ccount_core: simulate, prepare and count ions in Coulomb-crystal fluorescence images.

GUI-free: nothing in this package imports Qt or napari.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-ccount")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
