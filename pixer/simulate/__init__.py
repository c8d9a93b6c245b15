"""Simulated cryo-EM data with ground truth: density maps, micrographs, datasets."""

from pixer.simulate.dataset import default_particles_per_micrograph, simulate_dataset
from pixer.simulate.density import (
    DEMO_KINDS,
    check_density,
    demo_density,
    density_from_atoms,
    density_from_model,
    estimate_diameter,
    load_map,
)
from pixer.simulate.micrograph import DEFAULT_INTERFERENCE, SimResult, random_euler, simulate_micrograph

__all__ = [
    "DEFAULT_INTERFERENCE",
    "DEMO_KINDS",
    "SimResult",
    "check_density",
    "default_particles_per_micrograph",
    "demo_density",
    "density_from_atoms",
    "density_from_model",
    "estimate_diameter",
    "load_map",
    "random_euler",
    "simulate_dataset",
    "simulate_micrograph",
]
