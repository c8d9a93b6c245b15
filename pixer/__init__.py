"""pixer: particle picking for single-particle cryo-EM at cluster scale.

After PIXER (Zhang et al., BMC Bioinformatics 2019): a segmentation network with
parallel atrous branches turns a micrograph into a particle-probability map, a
grid-based local-maximum search turns the map into picks, and labels can be
synthesised from a 3D reconstruction.
"""

__version__ = "0.1.0"

from pixer.errors import PixerError

__all__ = ["PixerError", "__version__"]
