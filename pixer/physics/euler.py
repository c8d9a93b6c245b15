"""RELION ZYZ Euler angles.

Convention (identical to RELION's ``Euler_angles2matrix``): for angles
``rot`` (alpha), ``tilt`` (beta), ``psi`` (gamma) in degrees

    A = Rz(psi) @ Ry(tilt) @ Rz(rot),   Rz(a) = [[ cos a, sin a, 0],
                                                  [-sin a, cos a, 0],
                                                  [     0,     0, 1]],
                                        Ry(b) = [[cos b, 0, -sin b],
                                                  [    0, 1,      0],
                                                  [sin b, 0,  cos b]].

``A`` maps a vector of the map frame to the image frame: a projection image
``P(x, y) = sum_z V(A^T (x, y, z))`` (see :mod:`pixer.physics.project`).
"""

from __future__ import annotations

import torch


def euler_to_matrix(rot: torch.Tensor | float, tilt: torch.Tensor | float, psi: torch.Tensor | float) -> torch.Tensor:
    """RELION ``Euler_angles2matrix`` for ZYZ angles in degrees.

    Parameters
    ----------
    rot, tilt, psi
        Angles in degrees, broadcastable tensors of shape ``(...)`` (or floats).

    Returns
    -------
    torch.Tensor
        ``(..., 3, 3)`` rotation matrices (float64 for float inputs, else the
        input dtype), orthonormal with determinant 1.
    """
    rot, tilt, psi = (torch.as_tensor(a, dtype=torch.float64) if not torch.is_tensor(a) else a
                      for a in (rot, tilt, psi))
    rot, tilt, psi = torch.broadcast_tensors(rot, tilt, psi)
    if not rot.is_floating_point():
        rot, tilt, psi = rot.double(), tilt.double(), psi.double()
    a, b, g = (torch.deg2rad(t) for t in (rot, tilt, psi))
    ca, sa, cb, sb, cg, sg = a.cos(), a.sin(), b.cos(), b.sin(), g.cos(), g.sin()
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    rows = [
        torch.stack([cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb], -1),
        torch.stack([-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb], -1),
        torch.stack([sc, ss, cb], -1),
    ]
    return torch.stack(rows, -2)


def matrix_to_euler(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of :func:`euler_to_matrix` (RELION ``Euler_matrix2angles``).

    Parameters
    ----------
    matrix
        ``(..., 3, 3)`` rotation matrices.

    Returns
    -------
    rot, tilt, psi
        ``(...)`` angles in degrees; tilt in [0, 180]. At tilt 0 or 180 the
        whole in-plane rotation is assigned to ``psi`` with ``rot = 0``.
    """
    m = matrix.double()
    abs_sb = torch.sqrt(m[..., 0, 2] ** 2 + m[..., 1, 2] ** 2)
    tilt = torch.atan2(abs_sb, m[..., 2, 2])
    regular = abs_sb > 16 * torch.finfo(torch.float32).eps
    rot = torch.where(regular, torch.atan2(m[..., 2, 1], m[..., 2, 0]), torch.zeros_like(tilt))
    psi = torch.where(regular, torch.atan2(m[..., 1, 2], -m[..., 0, 2]),
                      torch.atan2(-m[..., 1, 0], m[..., 0, 0]) * torch.sign(m[..., 2, 2]))
    return torch.rad2deg(rot), torch.rad2deg(tilt), torch.rad2deg(psi)


__all__ = ["euler_to_matrix", "matrix_to_euler"]
