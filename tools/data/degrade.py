"""Make low-resolution frames from GT frames with the BI or BD degradation, mirroring the folder tree.

Example::

    python tools/data/degrade.py data/REDS/train_sharp data/REDS/train_sharp_bicubic/X4 --degradation BI
    python tools/data/degrade.py data/vimeo90k/GT data/vimeo90k/BDx4 --degradation BD

* ``BI``: MATLAB ``imresize(gt, 1/scale, 'bicubic')`` with antialiasing (``utils/imresize.py``);
* ``BD``: the published ``BD_degradation.m`` (Gaussian blur sigma 1.6, x4 subsampling).

Every image under ``IN_DIR`` (recursively) gets an LR twin at the same relative path under ``OUT_DIR``.
GT sizes must be multiples of ``scale`` unless ``--mod-crop`` (then the bottom/right rows and columns are
dropped first, as the official scripts do; the GT files themselves are not changed). Writes are atomic,
existing outputs are skipped unless ``--overwrite``, and ``OUT_DIR`` may not be (inside) ``IN_DIR``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from basicvsr_archival.datasets.io import IMG_EXTENSIONS, natural_key, read_image_uint8, write_image
from basicvsr_archival.utils.imresize import bd_degrade, imresize


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description="Make BI / BD low-resolution frames from GT frames.")
    parser.add_argument("in_dir", help="GT folder (searched recursively for images)")
    parser.add_argument("out_dir", help="LR output folder (same relative layout)")
    parser.add_argument("--degradation", choices=["BI", "BD"], default="BI", help="degradation (default BI)")
    parser.add_argument("--scale", type=int, default=4, help="downscaling factor (default 4)")
    parser.add_argument(
        "--mod-crop", action="store_true", help="crop GT to a multiple of scale before degrading"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return parser.parse_args(argv)


def degrade_image(img, degradation: str, scale: int, mod_crop: bool, where: str):
    """LR uint8 image of an RGB uint8 GT image (see the module docstring)."""
    h, w = img.shape[:2]
    if h % scale or w % scale:
        if not mod_crop:
            raise ValueError(f"{where}: size {h}x{w} is not a multiple of scale {scale} (use --mod-crop)")
        img = img[: h - h % scale, : w - w % scale]
    if degradation == "BI":
        return imresize(img, 1.0 / scale)
    return bd_degrade(img, scale)


def degrade_tree(
    in_dir: str | Path,
    out_dir: str | Path,
    degradation: str = "BI",
    scale: int = 4,
    mod_crop: bool = False,
    overwrite: bool = False,
) -> int:
    """Degrade every image under ``in_dir`` into ``out_dir``; returns the number of files written."""
    src, out = Path(in_dir).resolve(), Path(out_dir).resolve()
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: GT folder not found")
    if out == src or src in out.parents:
        raise ValueError(f"{out}: output folder must not be (inside) the input folder {src}")
    files = sorted(
        (p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS),
        key=lambda p: natural_key(str(p.relative_to(src))),
    )
    if not files:
        raise FileNotFoundError(f"{src}: no images found")
    written = 0
    for f in tqdm(files, desc=f"{degradation}x{scale}", unit="frame"):
        target = (out / f.relative_to(src)).with_suffix(".png")
        if target.exists() and not overwrite:
            continue
        lr = degrade_image(read_image_uint8(f), degradation, scale, mod_crop, str(f))
        write_image(target, lr)
        written += 1
    return written


def main(argv: list[str] | None = None) -> None:
    """Run the degradation from the command line."""
    args = parse_args(argv)
    n = degrade_tree(args.in_dir, args.out_dir, args.degradation, args.scale, args.mod_crop, args.overwrite)
    print(f"wrote {n} LR frames to {args.out_dir}")


if __name__ == "__main__":
    main()
