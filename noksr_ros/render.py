"""
Headless pictures of a mesh: shaded, coloured by height, seen from above at an angle.

Open3D's offscreen renderer needs EGL or Vulkan, which servers and CI machines often lack, and
matplotlib's 3D painter's algorithm takes minutes on a million triangles and sorts them wrongly.
So this renders by surface splatting with a z-buffer in numpy: dense area-weighted samples of
the triangles are projected, the nearest sample wins each pixel, and each pixel is shaded with
its triangle's normal (Lambert plus ambient) times its height colour. Pixels left empty between
samples are filled from their neighbours. Written by hand because no installed library renders
triangles without a GPU context; matplotlib only composes the final picture (path, title, scale).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from noksr_ros.meshcolor import apply_colormap


@dataclass(frozen=True)
class View:
    """Camera looking at `target` from `azimuth_deg` (0 = from +x) and `elevation_deg` above."""

    azimuth_deg: float = -60.0
    elevation_deg: float = 50.0
    width_px: int = 1600
    height_px: int = 1000


def _camera(view: View, centre: np.ndarray) -> np.ndarray:
    """Rows: right, up, forward (unit vectors) of an orthographic camera aimed at `centre`."""
    az, el = np.radians(view.azimuth_deg), np.radians(view.elevation_deg)
    back = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    forward = -back
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return np.stack([right, up, forward])


def _samples(vertices: np.ndarray, faces: np.ndarray, n: int,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` area-weighted points on the faces and the face index of each."""
    tri = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    face = rng.choice(len(faces), size=n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[face]
    return t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0]), face


def render_mesh(vertices: np.ndarray, faces: np.ndarray, view: View = View(), *,
                z_range_m: tuple[float, float] | None = None, samples_per_px: float = 4.0,
                background: tuple[float, float, float] = (1.0, 1.0, 1.0),
                seed: int = 0) -> tuple[np.ndarray, dict]:
    """
    (H, W, 3) float RGB image of the mesh and the projection used (for overlays).

    Colours follow height over `z_range_m` (default: the 2nd to 98th percentile of vertex z).
    The projection dict has `camera` (3,3), `centre` (3,), `scale_px_per_m` and the image size,
    so `project(points, projection)` places other map-frame points (the drive path) on it.
    """
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    h, w = view.height_px, view.width_px
    image = np.ones((h, w, 3)) * np.asarray(background)
    if len(faces) == 0:
        return image, {}
    rng = np.random.default_rng(seed)
    used = vertices[np.unique(faces)]
    centre = 0.5 * (used.min(0) + used.max(0))
    camera = _camera(view, centre)
    cam = (used - centre) @ camera.T
    extent = np.maximum(cam[:, :2].max(0) - cam[:, :2].min(0), 1e-6)
    scale = 0.94 * min(w / extent[0], h / extent[1])
    projection = {'camera': camera, 'centre': centre, 'scale_px_per_m': scale,
                  'offset': -0.5 * (cam[:, :2].max(0) + cam[:, :2].min(0)), 'size': (h, w)}
    n = int(min(samples_per_px * h * w, 12_000_000))
    points, face = _samples(vertices, faces, n, rng)
    cols, rows, depth = _pixels(points, projection)
    inside = (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
    cols, rows, depth, face, points = cols[inside], rows[inside], depth[inside], face[inside], \
        points[inside]
    # z-buffer: for each pixel keep the sample nearest to the camera.
    pixel = rows * w + cols
    order = np.lexsort((depth, pixel))
    first = np.ones(len(order), bool)
    first[1:] = pixel[order][1:] != pixel[order][:-1]
    winner = order[first]
    tri = vertices[faces[face[winner]]]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    normal *= np.where((normal @ camera[2])[:, None] > 0, -1.0, 1.0)  # face the camera
    light = np.array([0.35, 0.25, 0.9])
    light /= np.linalg.norm(light)
    shade = 0.35 + 0.65 * np.clip(normal @ light, 0.0, 1.0)
    z = points[winner, 2]
    lo, hi = z_range_m if z_range_m is not None else np.percentile(used[:, 2], [2, 98])
    rgb = apply_colormap((z - lo) / max(hi - lo, 1e-6), 'turbo')[:, :3] * shade[:, None]
    filled = np.zeros(h * w, bool)
    flat = image.reshape(-1, 3)
    flat[pixel[winner]] = rgb
    filled[pixel[winner]] = True
    return _fill_holes(image, filled.reshape(h, w)), projection


def _pixels(points: np.ndarray, projection: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cam = (points - projection['centre']) @ projection['camera'].T
    h, w = projection['size']
    xy = (cam[:, :2] + projection['offset']) * projection['scale_px_per_m']
    cols = np.floor(w / 2 + xy[:, 0]).astype(np.int64)
    rows = np.floor(h / 2 - xy[:, 1]).astype(np.int64)
    return cols, rows, cam[:, 2]


def project(points: np.ndarray, projection: dict) -> np.ndarray:
    """(N,2) pixel (col, row) of map-frame points in an image from `render_mesh`."""
    cols, rows, _ = _pixels(np.asarray(points, np.float64), projection)
    return np.stack([cols, rows], axis=1)


def _fill_holes(image: np.ndarray, filled: np.ndarray, passes: int = 2) -> np.ndarray:
    """Give empty pixels surrounded by surface the mean of their filled 3x3 neighbours."""
    for _ in range(passes):
        total = np.zeros_like(image)
        count = np.zeros(filled.shape)
        padded_i = np.pad(image * filled[..., None], ((1, 1), (1, 1), (0, 0)))
        padded_f = np.pad(filled.astype(float), 1)
        for dr in range(3):
            for dc in range(3):
                total += padded_i[dr:dr + filled.shape[0], dc:dc + filled.shape[1]]
                count += padded_f[dr:dr + filled.shape[0], dc:dc + filled.shape[1]]
        holes = ~filled & (count >= 5)
        image[holes] = total[holes] / count[holes, None]
        filled = filled | holes
    return image


def _height_range(vertices: np.ndarray, drive_path_m: np.ndarray | None) -> tuple[float, float]:
    """
    Colour range: from just below the road near the drive to 5 m above it.

    The road is the 5th height percentile of the surface within 10 m (horizontally) of the path,
    so streets going up or down hill elsewhere do not wash out the colours near the car.
    Without a path: the 2nd to 98th percentile.
    """
    if drive_path_m is None or len(drive_path_m) == 0:
        lo, hi = np.percentile(vertices[:, 2], [2, 98])
        return float(lo), float(max(hi, lo + 1.0))
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(np.asarray(drive_path_m)[:, :2]).query(vertices[:, :2],
                                                              distance_upper_bound=10.0)
    near = vertices[np.isfinite(dist), 2]
    lo = float(np.percentile(near if len(near) else vertices[:, 2], 5))
    return lo - 0.3, lo + 5.0


def save_preview(path: str | Path, vertices: np.ndarray, faces: np.ndarray, *,
                 drive_path_m: np.ndarray | None = None, title: str = '',
                 view: View = View()) -> Path:
    """Write a PNG of the mesh with the drive path drawn on it and a height scale."""
    import matplotlib

    matplotlib.use('Agg')
    from matplotlib import cm, colors
    import matplotlib.pyplot as plt

    used = np.asarray(vertices)[np.unique(faces)] if len(faces) else np.zeros((1, 3))
    z_range = _height_range(used, drive_path_m)
    image, projection = render_mesh(vertices, faces, view, z_range_m=z_range)
    dpi = 100
    fig = plt.figure(figsize=(view.width_px / dpi, view.height_px / dpi + 0.5), dpi=dpi)
    ax = fig.add_axes([0.0, 0.0, 0.93, 0.94])
    ax.imshow(image, interpolation='lanczos')
    if drive_path_m is not None and projection:
        px = project(drive_path_m, projection)
        ax.plot(px[:, 0], px[:, 1], color='white', lw=5, alpha=0.9, solid_capstyle='round')
        ax.plot(px[:, 0], px[:, 1], color='black', lw=2, label='drive path')
        ax.scatter(px[-1:, 0], px[-1:, 1], s=80, color='black', zorder=3, marker='>')
        ax.legend(loc='lower left', fontsize=12, framealpha=0.8)
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=15, y=0.985)
    bar = fig.add_axes([0.94, 0.15, 0.015, 0.65])
    mappable = cm.ScalarMappable(colors.Normalize(*z_range), 'turbo')
    fig.colorbar(mappable, cax=bar).set_label('height (m)', fontsize=12)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
