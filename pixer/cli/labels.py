"""Make segmentation labels from a 3D reconstruction (PIXER), or discs from coordinates.

With --particles and --map, every refined particle (coordinates, Euler angles,
origins) is re-projected from the map (resampled from the map's voxel size to
the label pixel size), thresholded (default: above 0.1 x each projection's
maximum, holes filled; or the silhouette of an iso-surface with --iso-level /
--mass-kda) and pasted at its true centre (coordinate - origin / pixel size).
With --coords and --diameter, discs are painted at the centres instead.

Shapes come from --micrographs (MRC headers), --shape H W or --shape-from-star;
the micrograph pixel size from --apix, the STAR (rlnMicrographPixelSize, or a
--micrographs-star such as a RELION 3.0 micrographs_ctf.star) or the MRC headers.
Writes <name>_label.mrc (int8 0/1) [+ <name>_instance.mrc] per micrograph,
label_index.star (label file per micrograph; `pixer train --labels DIR` reads
it), labels.star (every particle: pasted or skipped, and why) and labels.json.
Rerunning the same command into the same folder skips the micrographs an
interrupted run finished (any other settings start afresh). Centres that fall
outside their micrograph are skipped with a warning; a run that can paste no
particle at all, a map with no positive density, or a particle larger than a
micrograph is an error.

example:
  pixer labels --particles sim/particles.star --map sim/map.mrc \\
      --micrographs sim/micrographs --out sim_labels --instance
  pixer labels --particles run_data.star --map run_class001.mrc --shape 7420 7676 \\
      --micrographs-star ctf_params.star --out labels
  pixer labels --coords picks/ --diameter 150 --micrographs mics/ --out disc_labels
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pixer.cli._common import finite_float, positive_float, positive_int, write_run_record
from pixer.errors import PixerError, file_error
from pixer.io.coords import read_picks
from pixer.io.micrographs import list_micrographs
from pixer.io.star import read_particles
from pixer.labels.discs import DEFAULT_FRACTION
from pixer.labels.folder import SUMMARY, completed_micrographs, disc_label_results, write_label_folder
from pixer.labels.inputs import check_diameter, micrograph_files, resolve_apix, shapes_from_star
from pixer.labels.reconstruction import placement_reasons, synthesize_labels, unknown_micrograph_records
from pixer.labels.threshold import LabelThreshold, iso_level_for_mass
from pixer.simulate.density import check_density, estimate_diameter, load_map


def add_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``pixer labels``."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--particles", help="refined particles STAR (RELION 3.0/3.1+/4/5, cryoSPARC export)")
    src.add_argument("--coords", nargs="+", help="coordinates only (any pick format): disc labels, needs --diameter")
    parser.add_argument("--map", help="3D map (MRC), protein positive; needed with --particles")
    parser.add_argument("--map-apix", type=positive_float, default=None,
                        help="map voxel size in Å (default: MRC header)")
    shape = parser.add_mutually_exclusive_group(required=True)
    shape.add_argument("--micrographs", nargs="+",
                       help="micrographs (folder, glob, files or micrographs STAR): shapes and pixel sizes")
    shape.add_argument("--shape", nargs=2, type=positive_int, metavar=("H", "W"),
                       help="shape of every micrograph in px (when the micrographs are not at hand)")
    shape.add_argument("--shape-from-star", action="store_true",
                       help="shapes from rlnImageSizeX/Y in --micrographs-star")
    parser.add_argument("--out", required=True, help="label folder to write")
    parser.add_argument("--apix", type=positive_float, default=None, help="micrograph pixel size in Å/px")
    parser.add_argument("--micrographs-star", default=None,
                        help="micrographs/CTF STAR giving the micrograph pixel size (RELION 3.0 files)")
    parser.add_argument("--out-apix", type=positive_float, default=None,
                        help="label pixel size in Å/px (default: the micrograph's; labels are never finer)")
    thr = parser.add_mutually_exclusive_group()
    thr.add_argument("--threshold", type=positive_float, default=None,
                     help="label where the projection > THRESHOLD x its maximum (default 0.1)")
    thr.add_argument("--iso-level", type=finite_float, default=None,
                     help="label the projected silhouette of the map's iso-surface at this level")
    thr.add_argument("--mass-kda", type=positive_float, default=None,
                     help="as --iso-level, at the level enclosing this mass of protein (1.21 Å³/Da)")
    parser.add_argument("--no-fill-holes", action="store_true", help="do not fill holes in particle masks")
    parser.add_argument("--instance", action="store_true", help="also write instance images")
    parser.add_argument("--diameter", type=positive_float, default=None,
                        help="particle diameter in Å (discs: required; maps: default estimated from the map)")
    parser.add_argument("--label-fraction", type=positive_float, default=DEFAULT_FRACTION,
                        help=f"disc radius / particle radius for --coords (default {DEFAULT_FRACTION:g})")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--batch", type=positive_int, default=1024, help="particles projected at once (default 1024)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _threshold(args: argparse.Namespace, vol: np.ndarray, vol_apix: float) -> LabelThreshold:
    """The label threshold of the arguments; an iso level that keeps none or all of the map is an error."""
    fill = not args.no_fill_holes
    if args.mass_kda is None and args.iso_level is None:
        return LabelThreshold("fraction", fraction=0.1 if args.threshold is None else args.threshold, fill_holes=fill)
    if args.mass_kda is not None:
        try:
            level = iso_level_for_mass(vol, vol_apix, args.mass_kda)
        except PixerError as exc:
            raise file_error(args.map, str(exc)) from None
    else:
        level = args.iso_level
    above = int((vol > level).sum())
    if above == 0:
        raise file_error(args.map, f"no voxel exceeds the iso level {level:g} (map maximum {float(vol.max()):g})")
    if above == vol.size:
        raise file_error(args.map, f"every voxel exceeds the iso level {level:g} (map minimum {float(vol.min()):g}):"
                                   " the whole box would be the particle")
    return LabelThreshold("iso", iso_level=level, fill_holes=fill)


def _map_and_threshold(args: argparse.Namespace) -> tuple[np.ndarray, float, LabelThreshold]:
    """The map of ``--map`` (refused when it holds nothing to project), its voxel size and the threshold."""
    vol, vol_apix = load_map(args.map, args.map_apix)
    check_density(vol, args.map)
    return vol, vol_apix, _threshold(args, vol, vol_apix)


def _check_placement(particles: pd.DataFrame, shapes: dict, apix: dict, need_angles: bool) -> None:
    """Warn (stderr) when centres fall outside their micrograph; fail when no particle can be pasted."""
    source = particles.attrs.get("source", "particles")
    reasons = placement_reasons(particles, shapes, apix, need_angles=need_angles)
    n = len(particles)
    off = reasons.get("centre off micrograph", 0)
    if not reasons.get("ok"):
        why = ", ".join(f"{v} {k}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1]))
        raise PixerError(f"{source}: none of the {n} particles can be pasted ({why or 'no particles'})")
    if off:
        print(f"pixer labels: warning: {source}: {off} of {n} particle centres lie outside their micrograph "
              f"(skipped, recorded in {SUMMARY})", file=sys.stderr, flush=True)


def _file_id(path: str | None) -> list | None:
    """A file's identity for the resume check: resolved path, size, modification time."""
    if not path:
        return None
    p = Path(path)
    if not p.exists():
        return [str(path)]
    st = p.stat()
    return [str(p.resolve()), st.st_size, st.st_mtime_ns]


def _settings(args: argparse.Namespace, shapes: dict, apix: dict) -> dict:
    """Everything that decides the labels: a rerun with equal settings may skip finished micrographs."""
    keep = ("map_apix", "apix", "out_apix", "threshold", "iso_level", "mass_kda", "no_fill_holes", "instance",
            "diameter", "label_fraction")
    sources = [args.particles] if args.particles else list(args.coords or [])
    return {
        "pixer_labels": 1, "args": {k: getattr(args, k, None) for k in keep},
        "inputs": [_file_id(p) for p in sources], "map": _file_id(args.map),
        "micrographs_star": _file_id(args.micrographs_star),
        "shapes": {k: list(map(int, v)) for k, v in shapes.items()},
        "apix": {k: float(v) for k, v in dict(apix).items()},
    }


def main(args: argparse.Namespace) -> int:
    """Run ``pixer labels``."""
    if args.particles and not args.map:
        raise PixerError("--particles needs --map (or use --coords with --diameter for disc labels)")
    if args.coords and not args.diameter:
        raise PixerError("--coords needs --diameter (disc labels)")
    if args.shape_from_star and not args.micrographs_star:
        raise PixerError("--shape-from-star needs --micrographs-star")
    if args.particles:
        particles = read_particles(args.particles, apix=args.apix, micrographs_star=args.micrographs_star)
    else:
        particles = read_picks(args.coords, apix=args.apix)
    header_apix: dict[str, float] = {}
    if args.micrographs:
        shapes, header_apix = micrograph_files(particles, list_micrographs(args.micrographs))
        if not particles["micrograph"].astype(str).isin(set(shapes)).any():
            raise PixerError(f"{particles.attrs.get('source', 'particles')}: no particle's micrograph matches "
                             f"any of the {len(shapes)} micrograph files")
    elif args.shape_from_star:
        shapes = shapes_from_star(args.micrographs_star)
    else:
        shapes = {name: tuple(args.shape) for name in particles["micrograph"].astype(str).unique()}
    apix = resolve_apix(particles, list(shapes), args.apix, header_apix)
    _check_placement(particles, shapes, apix, need_angles=bool(args.particles))
    if args.particles:
        vol, vol_apix, threshold = _map_and_threshold(args)
        diameter = args.diameter or estimate_diameter(vol, vol_apix)
    else:
        diameter = args.diameter
    check_diameter(diameter, shapes, apix)
    if args.coords and args.label_fraction > 1:
        check_diameter(args.label_fraction * diameter, shapes, apix, what="label disc diameter")
    progress = not args.no_progress
    settings = _settings(args, shapes, apix)
    done = completed_micrographs(args.out, settings)
    todo = {name: shape for name, shape in shapes.items() if name not in done}
    if done:
        print(f"pixer labels: {len(done)} of {len(shapes)} micrographs already done in {args.out}: skipped",
              flush=True)
    if args.particles:
        results = synthesize_labels(particles, vol, vol_apix, todo, apix, out_apix=args.out_apix,
                                    threshold=threshold, instance=args.instance, device=args.device,
                                    batch=args.batch, diameter_A=diameter, progress=progress)
        info = {"mode": "reconstruction", "threshold": threshold.describe(), "map": str(args.map),
                "map_apix": vol_apix, "map_box": int(vol.shape[0])}
    else:
        results = disc_label_results(particles, todo, diameter, apix, args.out_apix, args.label_fraction)
        info = {"mode": "discs", "threshold": {"mode": "disc", "fraction": args.label_fraction,
                                               "rule": f"disc of radius {args.label_fraction:g} x particle radius"}}
    info.update(particles=str(args.particles or args.coords), diameter_A=round(float(diameter), 3),
                apix_source=particles.attrs.get("apix_source") if args.apix is None else "--apix",
                out_apix=args.out_apix, device=args.device)
    record = write_label_folder(args.out, results, unknown_micrograph_records(particles, shapes), info,
                                settings=settings, done=done, order=list(shapes))
    write_run_record(args.out, "labels", args, n_micrographs=record["n_micrographs"],
                     n_pasted=record["n_pasted"], n_skipped=record["n_skipped"])
    print(json.dumps({k: record[k] for k in ("n_micrographs", "n_particles", "n_pasted", "n_skipped",
                                             "skipped_reasons")}, indent=2))
    return 0
