"""Drawing one leaf: outline, serrations, veins, petiole and tint from its traits, then nuisance
(tilt, scale, position, lighting, background, blemishes, blur, noise) from the image's RNG.

Drawn at twice the output size and downsampled, so edges are anti-aliased like a scan.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from clca_deploy.data.synthetic.traits import CultivarTraits

SUPERSAMPLE = 2
# Points along the midrib; enough for the finest serration at the largest size.
OUTLINE_POINTS = 400
MAX_TILT_DEGREES = 25.0


def _half_width(u: np.ndarray) -> np.ndarray:
    """Ovate profile along the midrib (u = 0 at the base, 1 at the tip), widest below the middle."""
    return np.sin(np.pi * np.clip(u, 0.0, 1.0) ** 0.8) ** 1.1


def outline(traits: CultivarTraits, length: float) -> np.ndarray:
    """Closed blade outline in leaf coordinates (x across, y along the midrib, base at y=0), [K, 2]."""
    u = np.linspace(0.0, 1.0, OUTLINE_POINTS)
    width = length / traits.aspect
    base = 0.5 * width * _half_width(u)
    # Sawtooth serration: each tooth rises slowly and drops sharply towards the tip.
    phase = (u * traits.teeth) % 1.0
    teeth = 1.0 + traits.tooth_depth * (phase - 0.5) * 2.0 * np.sin(np.pi * u)
    right = base * teeth * (1.0 - traits.asymmetry)
    left = base * teeth * (1.0 + traits.asymmetry)
    y = u * length
    right_side = np.stack([right, y], axis=1)
    left_side = np.stack([-left[::-1], y[::-1]], axis=1)
    return np.concatenate([right_side, left_side])


def veins(traits: CultivarTraits, length: float, count: int = 7) -> list[np.ndarray]:
    """Midrib and pairs of secondary veins at the cultivar's angle, as polylines in leaf coordinates."""
    width = length / traits.aspect
    lines = [np.array([[0.0, 0.0], [0.0, length * 0.97]])]
    angle = math.radians(traits.vein_angle)
    for i in range(1, count + 1):
        u = i / (count + 1)
        reach = 0.45 * width * float(_half_width(np.array([u]))[0])
        for side, skew in ((1.0, 1.0 - traits.asymmetry), (-1.0, 1.0 + traits.asymmetry)):
            dx = side * reach * skew
            dy = abs(dx) / math.tan(angle)
            lines.append(np.array([[0.0, u * length], [dx, u * length + dy]]))
    return lines


def _transform(points: np.ndarray, angle: float, scale: float, centre: np.ndarray) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    rotation = np.array([[c, -s], [s, c]])
    return (points * scale) @ rotation.T + centre


def _colour(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, min(1.0, max(0.0, saturation)), min(1.0, max(0.0, value)))
    return int(r * 255), int(g * 255), int(b * 255)


def render_leaf(traits: CultivarTraits, size: int, rng: np.random.Generator) -> Image.Image:
    """An RGB image of ``size`` x ``size`` pixels showing one leaf with per-image nuisance."""
    canvas = size * SUPERSAMPLE
    paper = _colour(rng.uniform(0.05, 0.15), rng.uniform(0.0, 0.08), rng.uniform(0.88, 1.0))
    image = Image.new("RGB", (canvas, canvas), paper)
    draw = ImageDraw.Draw(image)

    length = canvas * rng.uniform(0.68, 0.82) / (1.0 + traits.petiole)
    # Scans are roughly upright: the tip points up within a few tens of degrees.
    angle = math.pi + math.radians(rng.uniform(-MAX_TILT_DEGREES, MAX_TILT_DEGREES))
    scale = rng.uniform(0.9, 1.1)
    centre_offset = np.array([0.0, -length * (1.0 - traits.petiole) / 2.0])
    centre = canvas / 2.0 + rng.uniform(-0.06, 0.06, size=2) * canvas
    place = lambda pts: [tuple(p) for p in _transform(pts + centre_offset, angle, scale, centre)]

    blade = _colour(traits.hue + rng.normal(0, 0.004), rng.uniform(0.55, 0.75), rng.uniform(0.45, 0.6))
    vein = _colour(traits.hue + 0.02, 0.35, 0.75)
    petiole_end = np.array([[0.0, 0.0], [0.0, -traits.petiole * length]])
    draw.line(place(petiole_end), fill=blade, width=max(2, int(canvas * 0.012)))
    blade_outline = place(outline(traits, length))
    draw.polygon(blade_outline, fill=blade)
    # Veins are drawn on a copy and kept only inside the blade, so none crosses the margin.
    veined = image.copy()
    vein_draw = ImageDraw.Draw(veined)
    for index, line in enumerate(veins(traits, length)):
        vein_draw.line(place(line), fill=vein, width=max(1, int(canvas * (0.008 if index == 0 else 0.004))))
    mask = Image.new("L", (canvas, canvas), 0)
    ImageDraw.Draw(mask).polygon(blade_outline, fill=255)
    image = Image.composite(veined, image, mask)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(0, 4)):  # blemishes: small brown spots somewhere on the blade
        spot = place(np.array([[rng.uniform(-0.15, 0.15) * length / traits.aspect, rng.uniform(0.2, 0.8) * length]]))[0]
        radius = canvas * rng.uniform(0.005, 0.02)
        draw.ellipse([spot[0] - radius, spot[1] - radius, spot[0] + radius, spot[1] + radius],
                     fill=_colour(rng.uniform(0.05, 0.11), 0.6, rng.uniform(0.3, 0.5)))

    image = image.resize((size, size), Image.Resampling.LANCZOS)
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 0.6)))
    pixels = np.asarray(image, dtype=np.float32)
    # Lighting: a linear gradient in a random direction, as from an uneven scanner lamp.
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    direction = rng.uniform(0.0, 2.0 * math.pi)
    gradient = 1.0 + rng.uniform(0.0, 0.18) * (xx * math.cos(direction) + yy * math.sin(direction))
    pixels = pixels * gradient[..., None] * rng.uniform(0.92, 1.05)
    pixels += rng.normal(0.0, rng.uniform(1.0, 4.0), size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
