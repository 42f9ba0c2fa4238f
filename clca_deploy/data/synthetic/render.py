"""Drawing one leaf scan: the blade, teeth, veins, petiole and tint come from the leaf's traits;
tilt, size, position, lighting, paper, blemishes, blur and noise come from per-image nuisance.

Everything is drawn at twice the output size and averaged down, so edges are anti-aliased
as in a real scan. Geometry is in units of the blade length: the midrib runs from the base
(0, 0) to the tip (0, 1), x grows to the leaf's right.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from clca_deploy.data.synthetic.traits import LeafTraits

SUPERSAMPLE = 2
SIDE_POINTS = 480  # per blade side: about 25 points per tooth at the highest tooth count
# Scanned leaves lie roughly upright (petiole down), but not exactly: a wide tilt range makes
# the model learn shape rather than a pixel template, while keeping "up" meaningful.
MAX_TILT_DEGREES = 45.0
SPECIES_HSV = (57.0, 0.80)  # hue in degrees and saturation of the dark olive green of real scans
PALE_VEIN = np.array([200.0, 198.0, 120.0])  # veins and petioles are lighter, yellowish, as in scans


@dataclass(frozen=True)
class Nuisance:
    """Per-image variation that carries no cultivar information."""

    tilt: float  # degrees, clockwise as seen, 0 = tip up
    extent: float  # leaf length (blade + petiole) / image side
    shift_x: float  # leaf centre offset, as a fraction of the free margin (-1..1)
    shift_y: float
    widest_point: float  # where along the blade the width peaks
    midrib_bend: float  # sideways bend of the midrib at the tip, in blade lengths
    petiole_bend: float
    secondary_veins: int  # per side
    brightness: float  # HSV value of the blade
    hue_jitter: float  # degrees: leaf age and growing conditions shift the colour a little too
    white_balance: tuple[float, float, float]  # scanner colour gains, on leaf and paper alike
    paper: tuple[float, float, float]  # background RGB
    light_slope: float  # relative brightness change across the image
    light_direction: float  # radians
    blemishes: int
    blur: float  # Gaussian radius in output pixels
    noise: float  # sensor noise standard deviation in grey levels

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()} | {
            "paper": [round(c, 1) for c in self.paper],
            "white_balance": [round(g, 4) for g in self.white_balance],
        }


def sample_nuisance(rng: np.random.Generator) -> Nuisance:
    """One image's nuisance; mostly near-white scanner paper, sometimes a grey or cream sheet."""
    if rng.random() < 0.8:
        level = rng.uniform(236.0, 252.0)
        # Real scans are slightly magenta-white: blue and red a little above green.
        paper = (level + rng.uniform(-2, 4), level - rng.uniform(0, 6), level + rng.uniform(0, 6))
    else:
        level = rng.uniform(200.0, 236.0)
        warmth = rng.uniform(-4.0, 12.0)
        paper = (level + warmth, level + warmth / 3, level - warmth)
    return Nuisance(
        tilt=float(rng.uniform(-MAX_TILT_DEGREES, MAX_TILT_DEGREES)),
        extent=float(rng.uniform(0.72, 0.94)),
        shift_x=float(rng.uniform(-0.8, 0.8)),
        shift_y=float(rng.uniform(-0.8, 0.8)),
        widest_point=float(rng.uniform(0.34, 0.48)),
        midrib_bend=float(rng.normal(0.0, 0.03)),
        petiole_bend=float(rng.normal(0.0, 0.25)),
        secondary_veins=int(rng.integers(6, 10)),
        brightness=float(rng.uniform(0.24, 0.38)),
        hue_jitter=float(rng.normal(0.0, 2.0)),
        white_balance=tuple(float(g) for g in rng.uniform(0.975, 1.025, size=3)),
        paper=tuple(float(min(255.0, c)) for c in paper),
        light_slope=float(rng.uniform(0.0, 0.12)),
        light_direction=float(rng.uniform(0.0, 2 * math.pi)),
        blemishes=int(min(4, rng.poisson(1.0))),
        blur=float(rng.uniform(0.0, 0.6)),
        noise=float(rng.uniform(1.0, 3.5)),
    )


def blade_outline(traits: LeafTraits, nuisance: Nuisance) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(closed serrated outline [K, 2], t [N], midrib x at t [N], untoothed half-width at t [N]), in blade lengths."""
    t = np.linspace(0.0, 1.0, SIDE_POINTS)
    half = _half_width(t, traits, nuisance)
    midrib = nuisance.midrib_bend * t**2
    sides = []
    for sign, scale in ((1.0, 1.0 - traits.asymmetry), (-1.0, 1.0 + traits.asymmetry)):
        smooth = np.stack([midrib + sign * scale * half, t], axis=1)
        sides.append(_serrate(smooth, sign, t, traits))
    right, left = sides
    return np.concatenate([right, left[::-1]]), t, midrib, half


def _half_width(t: np.ndarray, traits: LeafTraits, nuisance: Nuisance) -> np.ndarray:
    # t^a (1-t)^b peaks at a / (a + b): b sets how drawn-out the tip is, a follows so that the
    # widest point lands where the nuisance puts it (a < 1 gives a rounded base).
    b = traits.tip_acuteness
    m = nuisance.widest_point
    a = b * m / (1.0 - m)
    peak = m**a * (1.0 - m) ** b
    return (t**a * (1.0 - t) ** b) / peak * (0.5 / traits.aspect)


def _serrate(side: np.ndarray, sign: float, t: np.ndarray, traits: LeafTraits) -> np.ndarray:
    """Teeth cut inwards along the normal; each rises slowly and drops steeply, tip pointing apically."""
    steps = np.linalg.norm(np.diff(side, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(steps)]) / steps.sum()
    phase = (arc * traits.tooth_count) % 1.0
    rise = 0.8  # fraction of a tooth spent rising towards its point
    profile = np.where(phase < rise, phase / rise, (1.0 - phase) / (1.0 - rise))
    # No teeth at the very base and fading into the tip, as on real serrate leaves.
    envelope = _smoothstep(0.03, 0.16, t) * _smoothstep(1.0, 0.9, t)
    depth = traits.tooth_depth * envelope * (1.0 - profile)
    tangent = np.gradient(side, axis=0)
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1) * sign
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    return side - depth[:, None] * normal


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    u = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def vein_lines(
    traits: LeafTraits, t: np.ndarray, midrib: np.ndarray, half: np.ndarray, count: int
) -> list[np.ndarray]:
    """Midrib, then secondary veins leaving it at the cultivar's angle and ending short of the margin."""
    lines = [np.stack([midrib[t <= 0.97], t[t <= 0.97]], axis=1)]
    angle = math.radians(traits.vein_angle)
    width_at = lambda u: float(np.interp(u, t, half))
    for start in np.linspace(0.1, 0.8, count):
        for sign, scale in ((1.0, 1.0 - traits.asymmetry), (-1.0, 1.0 + traits.asymmetry)):
            # Opposite veins are slightly staggered (sub-opposite), as on most serrate leaves.
            u0 = start + (0.02 if sign < 0 else 0.0)
            reach = 0.85 * scale * width_at(u0) / math.sin(angle)
            for _ in range(4):  # the margin moves as the vein climbs: solve for where it is reached
                reach = 0.85 * scale * width_at(min(u0 + reach * math.cos(angle), 0.99)) / math.sin(angle)
            x0 = float(np.interp(u0, t, midrib))
            lines.append(np.array([[x0, u0], [x0 + sign * reach * math.sin(angle), u0 + reach * math.cos(angle)]]))
    return lines


def render_leaf(traits: LeafTraits, nuisance: Nuisance, size: int, rng: np.random.Generator) -> Image.Image:
    """An RGB ``size`` x ``size`` scan of one leaf; ``rng`` draws only pixel-level detail."""
    canvas = size * SUPERSAMPLE
    outline, t, midrib, half = blade_outline(traits, nuisance)
    veins = vein_lines(traits, t, midrib, half, nuisance.secondary_veins)
    bend = np.linspace(0.0, 1.0, 8)
    petiole = np.stack([nuisance.petiole_bend * traits.petiole_length * bend**2, -traits.petiole_length * bend], axis=1)
    to_pixels, blade_px = _placement(np.concatenate([outline, petiole]), traits, nuisance, canvas)

    blade = _blade_colour(traits, nuisance)
    paper = np.array(nuisance.paper)
    background = Image.new("RGB", (canvas, canvas), _rgb(paper))
    paper_draw = ImageDraw.Draw(background)
    paper_draw.line(to_pixels(petiole), fill=_mix(blade, PALE_VEIN, 0.3), width=max(2, round(0.018 * blade_px)),
                    joint="curve")
    for _ in range(int(rng.integers(0, 3))):  # dust on the scanner glass
        x, y = rng.uniform(0, canvas, size=2)
        r = rng.uniform(0.4, 1.0) * SUPERSAMPLE
        paper_draw.ellipse([x - r, y - r, x + r, y + r], fill=_mix(paper, np.zeros(3), 0.25))

    leaf = Image.new("RGB", (canvas, canvas), _rgb(blade))
    leaf_draw = ImageDraw.Draw(leaf)
    for index, line in enumerate(veins):
        width = 0.011 if index == 0 else 0.005
        leaf_draw.line(to_pixels(line), fill=_mix(blade, PALE_VEIN, 0.45 if index == 0 else 0.25),
                       width=max(1, round(width * blade_px)))
    for _ in range(nuisance.blemishes):  # spots: fungus, insect bites, scanner-pressed debris
        u = rng.uniform(0.15, 0.85)
        x = float(np.interp(u, t, midrib)) + rng.uniform(-0.7, 0.7) * float(np.interp(u, t, half))
        (cx, cy), r = to_pixels(np.array([[x, u]]))[0], rng.uniform(0.006, 0.025) * blade_px
        colour = [(105, 80, 35), (165, 155, 65), (35, 30, 12)][int(rng.integers(0, 3))]
        leaf_draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)

    mask = Image.new("L", (canvas, canvas), 0)
    ImageDraw.Draw(mask).polygon(to_pixels(outline), fill=255)
    scan = Image.composite(leaf, background, mask).resize((size, size), Image.Resampling.BOX)
    blade_alpha = np.asarray(mask.resize((size, size), Image.Resampling.BOX), dtype=np.float32) / 255.0
    if nuisance.blur > 0.05:
        scan = scan.filter(ImageFilter.GaussianBlur(nuisance.blur))
    return _texture_light_and_noise(scan, blade_alpha, nuisance, rng)


def _placement(points: np.ndarray, traits: LeafTraits, nuisance: Nuisance, canvas: int):
    """(function mapping leaf points to canvas pixel tuples, blade length in canvas pixels)."""
    angle = math.radians(nuisance.tilt)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    flipped = points * np.array([1.0, -1.0])  # leaf y points up, image rows point down
    scale = nuisance.extent * canvas / (1.0 + traits.petiole_length)
    rotated = flipped @ rotation.T
    span = rotated.max(axis=0) - rotated.min(axis=0)
    scale = min(scale, 0.96 * canvas / span.max())  # a tilted wide leaf must still fit
    low, high = rotated.min(axis=0) * scale, rotated.max(axis=0) * scale
    free = canvas - (high - low)
    offset = (canvas - (high + low)) / 2.0 + np.array([nuisance.shift_x, nuisance.shift_y]) * free / 2.0

    def to_pixels(leaf_points: np.ndarray) -> list[tuple[float, float]]:
        pixels = ((leaf_points * np.array([1.0, -1.0])) @ rotation.T) * scale + offset
        return [tuple(p) for p in pixels.tolist()]

    return to_pixels, scale


def _blade_colour(traits: LeafTraits, nuisance: Nuisance) -> np.ndarray:
    hue = (SPECIES_HSV[0] + traits.tint_hue + nuisance.hue_jitter) / 360.0
    saturation = float(np.clip(SPECIES_HSV[1] + traits.tint_saturation, 0.0, 1.0))
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, nuisance.brightness)) * 255.0


def _mix(a: np.ndarray, b: np.ndarray, weight: float) -> tuple[int, int, int]:
    return _rgb((1.0 - weight) * a + weight * b)


def _rgb(colour: np.ndarray) -> tuple[int, int, int]:
    return tuple(int(round(float(c))) for c in np.clip(colour, 0, 255))


def _smooth_field(rng: np.random.Generator, size: int, cells: int, amplitude: float) -> np.ndarray:
    coarse = rng.uniform(-amplitude, amplitude, size=(cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))


def _texture_light_and_noise(
    scan: Image.Image, blade_alpha: np.ndarray, nuisance: Nuisance, rng: np.random.Generator
) -> Image.Image:
    size = scan.width
    pixels = np.asarray(scan, dtype=np.float32)
    # Blades are not flat colour: thicker and thinner patches shade by several percent; the
    # paper's fibre varies by a couple of grey levels.
    mottling = _smooth_field(rng, size, cells=5, amplitude=0.08)
    fibre = _smooth_field(rng, size, cells=6, amplitude=2.5)
    ramp = (np.arange(size, dtype=np.float32) / size) - 0.5
    # An uneven scanner lamp: brightness changes linearly in one direction across the sheet.
    gradient = 1.0 + nuisance.light_slope * (
        math.cos(nuisance.light_direction) * ramp[None, :] + math.sin(nuisance.light_direction) * ramp[:, None]
    )
    # Per-pixel gain and offset first, so that the three colour channels are touched only twice.
    gain = (1.0 + blade_alpha * mottling) * gradient
    offset = (1.0 - blade_alpha) * fibre * gradient
    balance = np.array(nuisance.white_balance, dtype=np.float32)
    pixels = (pixels * gain[..., None] + offset[..., None]) * balance
    pixels += nuisance.noise * rng.standard_normal(pixels.shape, dtype=np.float32)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
