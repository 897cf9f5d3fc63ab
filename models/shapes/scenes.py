"""Synthetic scenes for the shipped demo models: deterministic from a seed.

A scene is a 64 x 64 RGB image on a 3 x 3 grid of cells (21 px): 1-4
objects, at most one per cell, each a shape (circle, square, triangle, star)
in a colour (red, green, blue, yellow, purple, orange), small or large,
jittered inside its cell, on a plain background of a random grey-ish tone
with per-pixel noise. Each scene comes with captions (for CLIP) and
question / answer pairs of five types (for the LLaVA-style model):

  colour    What colour is the circle?              (the shape appears once)
  shape     What shape is the red object?           (the colour appears once)
  count     How many squares are there?             zero .. four
  spatial   Is the red circle left of the star?     yes / no (different columns)
  position  What is at the top right?                "a red circle" / "nothing"

Splits are disjoint seed ranges (split_seeds). Pillow draws everything, so a
scene is the same bytes on every machine with the same Pillow.
"""
import random

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
CELL = SIZE / 3.0
SHAPES = ["circle", "square", "triangle", "star"]
COLOURS = {"red": (220, 30, 30), "green": (30, 170, 50), "blue": (40, 70, 230),
           "yellow": (235, 215, 30), "purple": (150, 50, 190), "orange": (245, 140, 20)}
NUMBERS = ["zero", "one", "two", "three", "four"]
# cells by (row, col), as the position questions name them
REGIONS = {(0, 0): "top left", (0, 1): "top", (0, 2): "top right",
           (1, 0): "left", (1, 1): "centre", (1, 2): "right",
           (2, 0): "bottom left", (2, 1): "bottom", (2, 2): "bottom right"}
QTYPES = ["colour", "shape", "count", "spatial", "position"]
SPLITS = {"train": 0, "val": 1_000_000, "test": 2_000_000}


def split_seeds(split, n):
    base = SPLITS[split]
    return range(base, base + n)


def scene(seed):
    """The objects of scene `seed`: list of dicts (shape, colour, row, col, r, cx, cy)."""
    rng = random.Random(seed)
    n = rng.choice([1, 1, 2, 2, 3, 3, 4])
    cells = rng.sample(sorted(REGIONS), n)
    objs = []
    for (row, col) in cells:
        r = rng.choice([5.5, 6.5, 7.5, 8.5])
        cx = (col + 0.5) * CELL + rng.uniform(-9.5 + r, 9.5 - r)
        cy = (row + 0.5) * CELL + rng.uniform(-9.5 + r, 9.5 - r)
        objs.append({"shape": rng.choice(SHAPES), "colour": rng.choice(sorted(COLOURS)),
                     "row": row, "col": col, "r": r, "cx": cx, "cy": cy})
    bg = tuple(rng.randint(60, 200) for _ in range(3))
    grey = sum(bg) // 3
    bg = tuple((c + 2 * grey) // 3 for c in bg)  # muted: never an object colour
    return {"seed": seed, "objects": objs, "bg": bg, "noise": rng.randint(0, 2 ** 31 - 1)}


def _star(cx, cy, r):
    import math
    pts = []
    for i in range(10):
        a = -math.pi / 2 + i * math.pi / 5
        rr = r if i % 2 == 0 else r * 0.45
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def _draw(dr, o, fill):
    cx, cy, r = o["cx"], o["cy"], o["r"]
    if o["shape"] == "circle":
        dr.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif o["shape"] == "square":
        s = r * 0.85
        dr.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif o["shape"] == "triangle":
        dr.polygon([(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)], fill=fill)
    else:
        dr.polygon(_star(cx, cy, r * 1.15), fill=fill)


def visible_masks(sc):
    """[n_objects, SIZE, SIZE] bool: the pixels of each object that the
    scene shows (later objects are drawn over earlier ones)."""
    out = np.zeros((len(sc["objects"]), SIZE, SIZE), bool)
    for i, o in enumerate(sc["objects"]):
        m = Image.new("L", (SIZE, SIZE), 0)
        _draw(ImageDraw.Draw(m), o, 255)
        out[i] = np.asarray(m) > 0
    for i in range(len(out) - 1):
        out[i] &= ~out[i + 1:].any(0)
    return out


def render(sc):
    d = np.random.RandomState(sc["noise"]).randint(-12, 13, (SIZE, SIZE, 1))
    a = np.clip(np.array(sc["bg"], dtype=np.int64)[None, None, :] + d, 0, 255)
    img = Image.fromarray(a.astype(np.uint8), "RGB")
    dr = ImageDraw.Draw(img)
    for o in sc["objects"]:
        _draw(dr, o, COLOURS[o["colour"]])
    return img


def name(o):
    return "%s %s" % (o["colour"], o["shape"])


def plural(shape):
    return shape + "s"


def caption(sc, rng):
    """A caption: the objects (grouped and counted) in random order, with
    their positions half of the time."""
    objs = list(sc["objects"])
    rng.shuffle(objs)
    if rng.random() < 0.5:
        groups = {}
        for o in objs:
            groups.setdefault(name(o), []).append(o)
        parts = []
        for k, v in groups.items():
            parts.append("a " + k if len(v) == 1 else
                         "%s %ss" % (NUMBERS[len(v)], k))
        text = " and ".join(parts)
    else:
        text = " and ".join("a %s at the %s" % (name(o), REGIONS[(o["row"], o["col"])])
                            for o in objs)
    return text


def questions(sc, rng):
    """Every question type that has a well-defined answer for this scene, one
    question each: [(type, question, answer)]."""
    objs = sc["objects"]
    out = []
    by_shape = {s: [o for o in objs if o["shape"] == s] for s in SHAPES}
    by_colour = {c: [o for o in objs if o["colour"] == c] for c in COLOURS}
    once = [s for s in SHAPES if len(by_shape[s]) == 1]
    if once:
        s = rng.choice(once)
        out.append(("colour", "What colour is the %s?" % s, by_shape[s][0]["colour"]))
    conce = [c for c in sorted(COLOURS) if len(by_colour[c]) == 1]
    if conce:
        c = rng.choice(conce)
        out.append(("shape", "What shape is the %s object?" % c, by_colour[c][0]["shape"]))
    s = rng.choice(SHAPES)
    out.append(("count", "How many %s are there?" % plural(s), NUMBERS[len(by_shape[s])]))
    uniq = [o for o in objs if sum(name(p) == name(o) for p in objs) == 1]
    pairs = [(a, b) for a in uniq for b in uniq if a is not b and a["col"] != b["col"]]
    if pairs:
        a, b = rng.choice(pairs)
        out.append(("spatial", "Is the %s left of the %s?" % (name(a), name(b)),
                    "yes" if a["col"] < b["col"] else "no"))
    cell = rng.choice(sorted(REGIONS))
    here = [o for o in objs if (o["row"], o["col"]) == cell]
    q = "What is at the %s?" % REGIONS[cell]
    out.append(("position", q, "a " + name(here[0]) if here else "nothing"))
    return out
