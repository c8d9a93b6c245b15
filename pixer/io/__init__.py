"""File I/O: micrographs, STAR and coordinate formats, safe atomic output."""

from pixer.io.coords import (
    read_box,
    read_csv,
    read_picks,
    read_topaz,
    write_box,
    write_csv,
    write_relion_coords,
    write_topaz,
)
from pixer.io.match import match_micrograph_names
from pixer.io.micrographs import Micrograph, list_micrographs, read_micrograph, write_micrographs_star
from pixer.io.star import micrograph_pixel_sizes, read_particles, read_star_blocks, write_particles_star

__all__ = [
    "Micrograph",
    "list_micrographs",
    "match_micrograph_names",
    "micrograph_pixel_sizes",
    "read_box",
    "read_csv",
    "read_micrograph",
    "read_particles",
    "read_picks",
    "read_star_blocks",
    "read_topaz",
    "write_box",
    "write_csv",
    "write_micrographs_star",
    "write_particles_star",
    "write_relion_coords",
    "write_topaz",
]
