"""Snapshot figures read back from their matplotlib objects: the decoded grid's cells are square
and none is cut off."""
import numpy as np

from aejax.analysis.figures import Manifold


def test_the_decoded_grid_has_square_whole_cells_whatever_the_latent_ranges(tmp_path):
    g = 10
    z1, z2 = np.linspace(-4, 10, g), np.linspace(-13, 1.5, g)  # unequal ranges, as a trained latent has
    decoded = np.random.default_rng(0).uniform(size=(g * g, 8, 8, 1)).astype(np.float32)
    fig = Manifold()
    fig.draw(tmp_path / "grid.png", decoded, z1, z2, np.array([-3.5, 9.5, -12.5, 1.0]), "t")
    ax = fig.ax
    left, right, bottom, top = fig.image.get_extent()
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    assert x0 <= left and right <= x1 and y0 <= bottom and top <= y1  # every row and column whole
    d1, d2 = (right - left) / g, (top - bottom) / g
    (px, py), (qx, qy) = ax.transData.transform([(left, bottom), (left + d1, bottom + d2)])
    assert abs((qx - px) / (qy - py) - 1) < 1e-6  # a cell is as wide as tall on the page
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
