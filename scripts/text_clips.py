"""Synthetic text footage: credits rolls, title cards, crawls and subtitles rendered from a font file.

Real video is full of text (titles, credits, subtitles, tickers, screen content), and text is what a
tokenizer trained on natural footage reconstructs worst: sharp glyph edges on flat backgrounds. No registry
package ships such footage, so scripts/build_dataset.py renders it from the fonts of Debian's font packages.
The words are pseudo-words from a syllable table (the glyphs matter, not the language), the layouts and
motions are drawn from a seeded generator, so a clip is the same on every machine.

``text_frames(font, count, seed, size)`` yields ``count`` uint8 RGB frames of shots 2-6 s long, each one of:

* roll: lines scrolling up at a constant speed, centred, left-aligned or two columns (role | name);
* card: a centred block of one to four lines (a larger heading first), fading in and out;
* crawl: one line moving sideways across a band;
* subtitle: one or two outlined lines near the bottom, over a drifting background.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SYLLABLES = ("ka ro mi ten lo an er is va no del shi tor ben ma ri el sa gun ho lin de par qu es zo fi um "
             "wen ba ste ly ox mar cel tha jo ni us ek vor dra pe li on ca").split()
SHOT_FRAMES = (48, 144)  # 2-6 s at 24 fps


def _word(rng: np.random.Generator, syllables: tuple[int, int] = (1, 4)) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(int(rng.integers(*syllables))))


def _line(rng: np.random.Generator, kind: str) -> str:
    """One line of text: a name, a role, a heading or a sentence, now and then with digits."""
    if kind == "name":
        return " ".join(_word(rng, (2, 4)).capitalize() for _ in range(int(rng.integers(2, 4))))
    if kind == "role":
        words = [_word(rng) for _ in range(int(rng.integers(1, 4)))]
        return " ".join(words).title() if rng.random() < 0.5 else " ".join(words)
    if kind == "heading":
        return " ".join(_word(rng, (2, 4)).upper() for _ in range(int(rng.integers(1, 3))))
    words = [_word(rng) for _ in range(int(rng.integers(3, 9)))]
    if rng.random() < 0.25:
        words.insert(int(rng.integers(0, len(words))), str(int(rng.integers(1, 2100))))
    if rng.random() < 0.3:
        words[int(rng.integers(0, len(words) - 1))] += ","
    return " ".join(words).capitalize() + str(rng.choice([".", ".", "?", "!", "..."]))


def _background(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, bool]:
    """(float32 HxWx3 background in 0..255, whether it is dark): plain, a gradient, a smooth field or grain."""
    dark = rng.random() < 0.75  # most titles and credits are light on dark
    base = rng.uniform(0, 40, 3) if dark else rng.uniform(200, 255, 3)
    style = rng.choice(["plain", "gradient", "field", "grain"], p=[0.4, 0.2, 0.2, 0.2])
    bg = np.broadcast_to(base.astype(np.float32), (height, width, 3)).copy()
    if style == "gradient":
        other = np.clip(base + rng.uniform(-60, 60, 3), 0, 255)
        t = np.linspace(0, 1, height if rng.random() < 0.6 else width, dtype=np.float32)
        ramp = t[:, None, None] if len(t) == height else t[None, :, None]
        bg = bg * (1 - ramp) + other.astype(np.float32) * ramp
    elif style == "field":
        from PIL import Image

        coarse = rng.uniform(-50, 50, (int(rng.integers(2, 6)), int(rng.integers(3, 9)), 3)).astype(np.float32)
        smooth = np.stack([np.asarray(Image.fromarray(coarse[..., c]).resize((width, height), Image.BICUBIC))
                           for c in range(3)], axis=-1)
        bg = bg + smooth
    elif style == "grain":  # a fine texture under the text (paper, film grain, painted rain)
        from PIL import Image, ImageFilter

        noise = Image.fromarray(rng.normal(128, 30, (height, width)).clip(0, 255).astype(np.uint8))
        noise = noise.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.6, 1.5))))
        bg = bg + (np.asarray(noise, dtype=np.float32)[..., None] - 128) * rng.uniform(0.3, 0.7)
    return np.clip(bg, 0, 255), dark


def _ink(rng: np.random.Generator, dark: bool) -> np.ndarray:
    light = [(255, 255, 255), (235, 235, 235), (255, 230, 120), (190, 220, 255), (255, 200, 160)]
    deep = [(0, 0, 0), (40, 40, 40), (120, 20, 20), (20, 30, 90), (30, 80, 40)]
    palette = light if dark else deep
    return np.array(palette[int(rng.integers(len(palette)))], dtype=np.float32)


def _mask(size: tuple[int, int], draws, blur: float, stroke: int = 0) -> np.ndarray:
    """float32 coverage (0..1) of text drawn on a (width, height) canvas: ``draws`` is (xy, text, font, anchor)."""
    from PIL import Image, ImageDraw, ImageFilter

    canvas = Image.new("L", size, 0)
    pen = ImageDraw.Draw(canvas)
    for xy, text, font, anchor in draws:
        pen.text(xy, text, fill=255, font=font, anchor=anchor, stroke_width=stroke, stroke_fill=255)
    if blur > 0:
        canvas = canvas.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(canvas, dtype=np.float32) / 255.0


def _compose(bg: np.ndarray, ink: np.ndarray, mask: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    m = (mask * alpha)[..., None]
    return bg * (1 - m) + ink * m


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def _roll(rng, font_path, n, width, height, blur):
    from PIL import ImageFont

    speed = rng.uniform(0.5, 3.0)  # pixels per frame
    size = int(rng.integers(8, 30))
    body, big = ImageFont.truetype(str(font_path), size), ImageFont.truetype(str(font_path), int(size * 1.5))
    layout = rng.choice(["centre", "left", "columns"])
    lead = int(size * rng.uniform(1.2, 1.8))
    total = height + int(np.ceil(n * speed)) + lead
    draws, y = [], int(rng.integers(0, lead))
    while y < total:
        if rng.random() < 0.12:  # a section heading and a gap
            draws.append(((width // 2, y), _line(rng, "heading"), big, "mt"))
            y += int(lead * 2.2)
            continue
        if layout == "columns":
            draws.append(((width // 2 - size, y), _line(rng, "role"), body, "rt"))
            draws.append(((width // 2 + size, y), _line(rng, "name"), body, "lt"))
        elif layout == "left":
            draws.append(((int(width * 0.12), y), _line(rng, rng.choice(["name", "role", "sentence"])), body, "lt"))
        else:
            draws.append(((width // 2, y), _line(rng, rng.choice(["name", "role"])), body, "mt"))
        y += lead if rng.random() < 0.85 else 2 * lead
    mask = _mask((width, total), draws, blur)
    bg, dark = _background(rng, height, width)
    ink = _ink(rng, dark)
    for t in range(n):
        top = int(round(t * speed))
        yield _to_uint8(_compose(bg, ink, mask[top:top + height]))


def _card(rng, font_path, n, width, height, blur):
    from PIL import ImageFont

    size = int(rng.integers(14, 40))
    lines = [(_line(rng, "heading"), ImageFont.truetype(str(font_path), int(size * 1.4)))]
    lines += [(_line(rng, rng.choice(["name", "role", "sentence"])), ImageFont.truetype(str(font_path), size))
              for _ in range(int(rng.integers(0, 4)))]
    lead = int(size * 1.6)
    y0 = int(height * rng.uniform(0.2, 0.75)) - lead * len(lines) // 2
    draws = [((width // 2, y0 + k * lead), text, font, "mt") for k, (text, font) in enumerate(lines)]
    mask = _mask((width, height), draws, blur)
    bg, dark = _background(rng, height, width)
    ink = _ink(rng, dark)
    fade = int(rng.integers(1, max(2, min(24, n // 3))))
    for t in range(n):
        alpha = min(1.0, (t + 1) / fade, (n - t) / fade)
        yield _to_uint8(_compose(bg, ink, mask, alpha))


def _crawl(rng, font_path, n, width, height, blur):
    from PIL import ImageFont

    speed = rng.uniform(1.5, 6.0)
    size = int(rng.integers(12, 36))
    font = ImageFont.truetype(str(font_path), size)
    total = width + int(np.ceil(n * speed)) + size
    text = "  ".join(_line(rng, "sentence") for _ in range(int(total / (size * 4)) + 2))
    band_y = int(height * rng.uniform(0.1, 0.85))
    mask = _mask((total, height), [((int(rng.integers(0, width // 2)), band_y), text, font, "lm")], blur)
    bg, dark = _background(rng, height, width)
    band_dark = rng.random() < 0.5
    band = slice(max(0, band_y - size), min(height, band_y + size))
    bg[band] = bg[band] * 0.3 + (np.float32(10) if band_dark else np.float32(235)) * 0.7
    ink = _ink(rng, band_dark)
    for t in range(n):
        left = int(round(t * speed))
        yield _to_uint8(_compose(bg, ink, mask[:, left:left + width]))


def _subtitle(rng, font_path, n, width, height, blur):
    from PIL import ImageFont

    size = int(rng.integers(12, 30))
    font = ImageFont.truetype(str(font_path), size)
    lead = int(size * 1.35)
    lines = [_line(rng, "sentence") for _ in range(int(rng.integers(1, 3)))]
    bottom = int(height * rng.uniform(0.8, 0.95))
    draws = [((width // 2, bottom - (len(lines) - k) * lead), text, font, "mt") for k, text in enumerate(lines)]
    stroke = int(rng.integers(1, 3))
    outline, fill = _mask((width, height), draws, blur, stroke), _mask((width, height), draws, blur)
    # The background drifts: a larger field seen through a window that pans.
    pan = rng.uniform(-2, 2, 2)
    span = (int(abs(pan[1]) * n) + height + 2, int(abs(pan[0]) * n) + width + 2)
    field, _ = _background(rng, *span)
    field = field * 0.6 + rng.uniform(40, 160) * 0.4  # mid-tones, under text of either ink
    ink = np.array((255, 255, 255) if rng.random() < 0.8 else (255, 235, 90), dtype=np.float32)
    for t in range(n):
        y = int(round(t * pan[1] if pan[1] >= 0 else (n - t) * -pan[1]))
        x = int(round(t * pan[0] if pan[0] >= 0 else (n - t) * -pan[0]))
        frame = _compose(field[y:y + height, x:x + width], np.zeros(3, np.float32), outline)
        yield _to_uint8(_compose(frame, ink, fill))


SHOTS = {"roll": (_roll, 0.4), "card": (_card, 0.25), "crawl": (_crawl, 0.15), "subtitle": (_subtitle, 0.2)}


def text_frames(font_path: Path, count: int, seed: int, size: tuple[int, int]):
    """``count`` uint8 RGB frames (``size`` = (width, height)) of text shots rendered with ``font_path``."""
    width, height = size
    rng = np.random.default_rng([seed, 7013])
    names = list(SHOTS)
    shares = np.array([SHOTS[k][1] for k in names])
    made = 0
    while made < count:
        n = min(count - made, int(rng.integers(*SHOT_FRAMES)))
        render = SHOTS[names[int(rng.choice(len(names), p=shares / shares.sum()))]][0]
        blur = float(rng.uniform(0.3, 1.0)) if rng.random() < 0.3 else 0.0  # soft text, as a camera or scaler leaves it
        yield from render(rng, font_path, n, width, height, blur)
        made += n
