"""Image-formation physics: RELION Euler angles, projection, CTF (torch, CPU/CUDA)."""

from pixer.physics.ctf import apply_ctf, ctf_2d, electron_wavelength
from pixer.physics.euler import euler_to_matrix, matrix_to_euler
from pixer.physics.project import FourierVolume, fourier_volume, project, project_matrices, shift_images

__all__ = [
    "FourierVolume",
    "apply_ctf",
    "ctf_2d",
    "electron_wavelength",
    "euler_to_matrix",
    "fourier_volume",
    "matrix_to_euler",
    "project",
    "project_matrices",
    "shift_images",
]
