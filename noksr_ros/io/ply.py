"""
Binary PLY for triangle meshes, written with numpy (fast for millions of faces).

Vertices are stored as float64 so map-frame coordinates kilometres from the origin keep their
millimetres; open3d, MeshLab and Blender read the files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from noksr_ros.io.atomic import SHARED, atomic_write


def write_ply(path: str | Path, vertices: np.ndarray, faces: np.ndarray,
              colors: np.ndarray | None = None) -> Path:
    """Write (V,3) vertices, (F,3) faces and optional (V,3) uint8 colours atomically."""
    path = Path(path)
    vertices = np.asarray(vertices, np.float64).reshape(-1, 3)
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError('faces reference vertices that do not exist')
    header = ['ply', 'format binary_little_endian 1.0', f'element vertex {len(vertices)}',
              'property double x', 'property double y', 'property double z']
    vdtype = [('x', '<f8'), ('y', '<f8'), ('z', '<f8')]
    if colors is not None:
        header += ['property uchar red', 'property uchar green', 'property uchar blue']
        vdtype += [('r', 'u1'), ('g', 'u1'), ('b', 'u1')]
    header += [f'element face {len(faces)}', 'property list uchar int vertex_indices',
               'end_header']
    vrec = np.empty(len(vertices), dtype=vdtype)
    vrec['x'], vrec['y'], vrec['z'] = vertices.T
    if colors is not None:
        c = np.asarray(colors, np.uint8).reshape(-1, 3)
        vrec['r'], vrec['g'], vrec['b'] = c.T
    frec = np.empty(len(faces), dtype=[('n', 'u1'), ('i', '<i4', (3,))])
    frec['n'], frec['i'] = 3, faces

    def write(handle):
        handle.write(('\n'.join(header) + '\n').encode('ascii'))
        handle.write(vrec.tobytes())
        handle.write(frec.tobytes())

    atomic_write(path, write, SHARED)  # a full disk leaves no partial file behind
    return path


def read_ply(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (V,3) float64, faces (F,3) int64) of a triangle PLY (via open3d, any format)."""
    import open3d as o3d

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'no mesh at {path}')
    mesh = o3d.io.read_triangle_mesh(str(path))
    return np.asarray(mesh.vertices, np.float64), np.asarray(mesh.triangles, np.int64)
