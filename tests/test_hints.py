"""Colour hints (napari_chromagan.edit.hints): the issue's "Done when" list, measured; no Qt."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from skimage.color import rgb2lab

from napari_chromagan import apply_color_hints
from napari_chromagan.edit.blend import render_rgb
from napari_chromagan.edit.hints import ColorHints, HintParams, hint_plane
from napari_chromagan.engine.normalize import Normalization
from napari_chromagan.engine.result import ColorizeResult
from napari_chromagan.errors import Cancelled

DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dev"
RED = (220, 20, 20)
BLUE = (30, 60, 210)


def make_result(L, ab, missing=None):
    """A ColorizeResult as the engine makes it: rgb rendered from L* and the network's a*b*."""
    L = np.asarray(L, np.float32)
    ab = np.asarray(ab, np.float32)
    return ColorizeResult(
        rgb=render_rgb(L, ab),
        L=L,
        ab=ab,
        class_probs=None,
        normalization=Normalization("dtype", 0.0, 255.0),
        missing=missing,
        device="cpu",
    )


def oracle_ab(rgb):
    """a*, b* of sRGB colours by scikit-image (independent of the package's own conversion)."""
    return rgb2lab(np.asarray(rgb, np.float64).reshape(-1, 1, 3) / 255.0)[:, 0, 1:]


def hue_deg(ab):
    return np.degrees(np.arctan2(ab[..., 1], ab[..., 0]))


def hue_gap(ab, target):
    """Absolute hue difference in degrees, in [0, 180]."""
    return np.abs((hue_deg(ab) - hue_deg(np.asarray(target)) + 180.0) % 360.0 - 180.0)


def chroma(ab):
    return np.hypot(ab[..., 0], ab[..., 1])


def disc_scene(size=256, radius=56.0, centre=(128.0, 128.0), seed=0):
    """A lighter disc (L* 55, faint texture) on a dark ground (L* 25): a strong lightness edge.
    The network's colours are a green that varies slowly (so the hint has to turn the hue)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    r = np.hypot(yy - centre[0], xx - centre[1])
    inside = r <= radius
    L = np.where(inside, 55.0, 25.0) + rng.normal(0.0, 0.7, (size, size))
    ab = np.empty((size, size, 2))
    ab[..., 0] = -25.0 + 6.0 * np.sin(xx / 40.0)
    ab[..., 1] = 30.0 + 5.0 * np.cos(yy / 50.0)
    return make_result(L, ab), inside, r - radius


# ----------------------------------------------------------------------------------- the region


def test_one_red_hint_fills_its_region_and_stops_at_the_lightness_edge():
    result, inside, outside_by = disc_scene()
    hints = ColorHints.from_points([[105.0, 150.0]], [RED])  # off centre: 63 px from the far rim
    out = apply_color_hints(result, hints)

    (target,) = oracle_ab([RED])
    region = out.ab[inside]
    assert hue_gap(region, target).max() < 20.0
    assert chroma(region).min() >= 0.7 * chroma(target)
    # across the edge the network's chroma stays, beyond a few pixels
    change = np.abs(out.ab - result.ab).max(axis=-1)
    assert change[outside_by > 3].max() < 3.0
    assert change[outside_by > 1].max() < 6.0
    # the rendering (scikit-image reads it back) is red too, where L* 55 allows
    seen = rgb2lab(out.rgb)[inside][:, 1:]
    assert np.median(hue_gap(seen, target)) < 10.0


def test_several_hints_of_different_colours_in_one_region_blend_smoothly():
    rng = np.random.default_rng(1)
    L = 60.0 + rng.normal(0.0, 0.7, (200, 240))
    ab = np.zeros((200, 240, 2))
    ab[..., 1] = 10.0
    result = make_result(L, ab)
    hints = ColorHints.from_points([[100.0, 50.0], [100.0, 190.0]], [RED, BLUE])
    out = apply_color_hints(result, hints, reach=0.5)

    red, blue = oracle_ab([RED, BLUE])
    row = out.ab[100, 50:191]
    # each end takes its hint's colour
    assert np.abs(row[0] - red).max() < 0.15 * chroma(red)
    assert np.abs(row[-1] - blue).max() < 0.15 * chroma(blue)
    # half way, a blend: each channel a quarter or more of the way from either hint's value
    middle = out.ab[100, 120]
    share = (middle - red) / (blue - red)
    assert np.all((0.25 < share) & (share < 0.75))
    # no steps anywhere in the plane: the largest change between neighbouring pixels is under
    # 3 % of the distance between the two colours (133 a*b* units; measured 2.2 %)
    step = 0.03 * np.hypot(*(red - blue))
    assert np.abs(np.diff(out.ab, axis=0)).max() < step
    assert np.abs(np.diff(out.ab, axis=1)).max() < step


def test_reach_sets_how_far_a_hint_spreads():
    L = np.full((160, 160), 50.0)
    result = make_result(L, np.zeros((160, 160, 2)))
    hints = ColorHints.from_points([[80.0, 20.0]], [RED])
    spread = {}
    for reach in (0.1, 0.25, 0.5):
        out = apply_color_hints(result, hints, reach=reach)
        changed = np.abs(out.ab - result.ab).max(axis=-1) > 10.0
        spread[reach] = int(np.flatnonzero(changed[80]).max()) - 20
    # where the lightness is uniform, a hint moves pixels by more than 10 units out to about
    # 2.5 reach (here in pixels: reach x 160; measured 41 and 94 px); 0.5 crosses the plane
    for reach in (0.1, 0.25):
        assert 2.0 * reach * 160 < spread[reach] < 3.0 * reach * 160
    assert spread[0.5] == 139


def test_strength_moves_pixels_that_far_towards_the_hint():
    result, inside, _ = disc_scene()
    hints = ColorHints.from_points([[128.0, 128.0]], [RED])
    full = apply_color_hints(result, hints, strength=1.0)
    half = apply_color_hints(result, hints, strength=0.5)
    d_full = (full.ab - result.ab)[inside]
    d_half = (half.ab - result.ab)[inside]
    np.testing.assert_allclose(d_half, 0.5 * d_full, atol=0.05)


# ----------------------------------------------------------------------------------- identity


def test_without_hints_the_result_is_given_back_exactly():
    result, _, _ = disc_scene(size=64, radius=20, centre=(32, 32))
    for hints in (
        ColorHints.from_points(np.zeros((0, 2)), np.zeros((0, 3))),
        ColorHints.from_labels(np.zeros((64, 64), np.int32), {}),
        ColorHints.from_labels(np.zeros((64, 64), np.int32), {1: RED}),  # no pixel has label 1
    ):
        assert hints.is_empty or not hints.planes(())
        out = apply_color_hints(result, hints)
        assert out.ab is result.ab and out.rgb is result.rgb and out.L is result.L
    out = apply_color_hints(result, ColorHints.from_points([[30.0, 30.0]], [RED]), strength=0.0)
    assert out.ab is result.ab
    # a hint beyond the plane's edge changes nothing, to the bit
    out = apply_color_hints(result, ColorHints.from_points([[30.0, 500.0]], [RED]))
    np.testing.assert_array_equal(out.ab, result.ab)
    np.testing.assert_array_equal(out.rgb, result.rgb)


def test_lightness_is_unchanged_everywhere_and_untouched_pixels_keep_their_rgb():
    result, _, outside_by = disc_scene()
    L_before = result.L.copy()
    ab_before, rgb_before = result.ab.copy(), result.rgb.copy()
    out = apply_color_hints(result, ColorHints.from_points([[128.0, 128.0]], [RED]))
    assert out.L is result.L
    np.testing.assert_array_equal(result.L, L_before)  # the input is never written into
    np.testing.assert_array_equal(result.ab, ab_before)
    np.testing.assert_array_equal(result.rgb, rgb_before)
    # what the rendering shows keeps L* (scikit-image's reading of the uint8 pixels)
    assert np.abs(rgb2lab(out.rgb)[..., 0] - result.L).max() < 0.6
    same = (out.ab == result.ab).all(axis=-1)
    assert same[outside_by > 6].all()
    np.testing.assert_array_equal(out.rgb[same], result.rgb[same])


def test_missing_pixels_get_no_chroma_change():
    result, inside, _ = disc_scene(size=96, radius=30, centre=(48, 48))
    missing = np.zeros(result.L.shape, bool)
    missing[40:50, 40:50] = True
    result = make_result(result.L, result.ab, missing=missing)
    out = apply_color_hints(result, ColorHints.from_points([[48.0, 60.0]], [RED]))
    np.testing.assert_array_equal(out.ab[missing], result.ab[missing])
    assert np.abs(out.ab - result.ab)[inside & ~missing].max() > 50


# ----------------------------------------------------------------------------------- labels


def test_labels_mode_fills_each_label_and_feathers_at_its_border():
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:160, 0:200]
    # texture and shading inside the labels: the fill must not depend on them
    L = 40.0 + 0.15 * xx + rng.normal(0.0, 4.0, (160, 200))
    ab = np.zeros((160, 200, 2))
    ab[..., 0], ab[..., 1] = -12.0, 20.0
    result = make_result(L, ab)
    labels = np.zeros((160, 200), np.uint16)
    labels[20:70, 20:90] = 1
    labels[np.hypot(yy - 110, xx - 140) < 30] = 2
    labels[120:150, 20:60] = 3  # a label without a colour is no hint
    hints = ColorHints.from_labels(labels, {1: RED, 2: BLUE})
    out = apply_color_hints(result, hints, feather=4.0)

    red, blue = oracle_ab([RED, BLUE])
    for label, colour in ((1, red), (2, blue)):
        core = ndimage.binary_erosion(labels == label, iterations=2)
        assert np.abs(out.ab[core] - colour).max() < 2.0
    away = ndimage.distance_transform_edt(~np.isin(labels, (1, 2)))
    change = np.abs(out.ab - result.ab).max(axis=-1)
    assert change[away > 12].max() < 3.0
    np.testing.assert_array_equal(out.ab[labels == 3], result.ab[labels == 3])
    # the border feathers: half way or so one pixel out, most of the way back a few pixels out
    ring1 = (away > 0) & (away <= 1.5) & (labels == 0)
    ring6 = (away > 5) & (away <= 7) & (labels == 0)
    assert 0.2 < np.median(change[ring1]) / chroma(red - ab[0, 0]) < 0.9
    assert np.median(change[ring6]) < np.median(change[ring1]) / 3


def test_labels_mode_solves_the_documented_energy():
    """On piecewise-constant L* (regions at least 2 px wide), the system is Levin's textbook one:
    minimise sum w_ij (d_i - d_j)^2 + lambda sum d_i^2 + P sum m_i (d_i - c_i)^2 with
    w_ij = exp(-dL^2 / 2 edge^2), lambda = 1 / feather^2, P = 100, c = hint - network. Solved
    here densely with numpy, term by term."""
    h, w = 9, 11
    L = np.full((h, w), 30.0)
    L[:, 6:] = 36.0  # a soft edge (two sigma)
    L[5:, :3] = 70.0  # a hard one
    ab = np.stack(np.meshgrid(np.linspace(-5, 5, w), np.linspace(0, 8, h)), axis=-1)
    labels = np.zeros((h, w), np.int32)
    labels[1:4, 1:4] = 1
    colour = oracle_ab([RED])[0]
    edge, feather = 3.0, 2.0
    out = hint_plane(
        L, ab, ColorHints.from_labels(labels, {1: RED}), HintParams(edge=edge, feather=feather)
    )

    n = h * w
    A = np.zeros((n, n))
    idx = np.arange(n).reshape(h, w)
    pairs = [(idx[r, c], idx[r, c + 1]) for r in range(h) for c in range(w - 1)]
    pairs += [(idx[r, c], idx[r + 1, c]) for r in range(h - 1) for c in range(w)]
    for i, j in pairs:
        wij = np.exp(-((L.flat[i] - L.flat[j]) ** 2) / (2 * edge**2))
        A[i, i] += wij
        A[j, j] += wij
        A[i, j] -= wij
        A[j, i] -= wij
    m = (labels == 1).ravel().astype(float)
    A += np.diag(1.0 / feather**2 + 100.0 * m)
    c = (colour - ab.reshape(n, 2)) * m[:, None]
    d = np.linalg.solve(A, 100.0 * c)
    expected = ab + d.reshape(h, w, 2)
    expected[np.abs(d.reshape(h, w, 2)).max(axis=-1) < 0.01] = ab[
        np.abs(d.reshape(h, w, 2)).max(axis=-1) < 0.01
    ]
    np.testing.assert_allclose(out, expected, atol=2e-3)


def test_strokes_spread_like_points():
    result, inside, outside_by = disc_scene()
    strokes = np.zeros(result.L.shape, np.uint8)
    strokes[120, 100:160] = 7  # one pixel wide
    out = apply_color_hints(result, ColorHints.from_strokes(strokes, {7: RED}))
    (target,) = oracle_ab([RED])
    assert hue_gap(out.ab[inside], target).max() < 20.0
    assert chroma(out.ab[inside]).min() >= 0.7 * chroma(target)
    assert np.abs(out.ab - result.ab)[outside_by > 3].max() < 3.0


# ----------------------------------------------------------------------------------- stacks


def make_stack(planes=3, h=64, w=80):
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:h, 0:w]
    inside = np.hypot(yy - 32, xx - 40) < 20
    L = np.stack([np.where(inside, 60.0, 30.0) + rng.normal(0, 0.5, (h, w)) for _ in range(planes)])
    ab = np.zeros((planes, h, w, 2))
    ab[..., 0] = np.linspace(-20, 20, planes)[:, None, None]
    ab[..., 1] = 15.0
    return make_result(L, ab), inside


def test_stacks_work_plane_by_plane():
    result, inside = make_stack()
    # a point with a stack coordinate colours its own plane only
    hints = ColorHints.from_points([[1, 32.0, 40.0]], [RED])
    assert hints.planes((3,)) == [(1,)]
    calls = []
    out = apply_color_hints(result, hints, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 1), (1, 1)]
    for p in (0, 2):
        np.testing.assert_array_equal(out.ab[p], result.ab[p])
        np.testing.assert_array_equal(out.rgb[p], result.rgb[p])
    np.testing.assert_array_equal(
        out.ab[1], hint_plane(result.L[1], result.ab[1], hints, index=(1,))
    )
    assert hue_gap(out.ab[1][inside], oracle_ab([RED])[0]).max() < 20.0

    # (row, col) points colour every plane, each from its own network colours
    every = ColorHints.from_points([[32.0, 40.0]], [BLUE])
    out = apply_color_hints(result, every)
    for p in range(3):
        np.testing.assert_array_equal(out.ab[p], hint_plane(result.L[p], result.ab[p], every))
        assert np.abs(out.ab[p] - result.ab[p])[inside].min() > 5

    # a (planes, H, W) mask: only the planes whose slice holds a coloured label
    mask = np.zeros(result.L.shape, np.int32)
    mask[2, 25:40, 30:50] = 4
    out = apply_color_hints(result, ColorHints.from_labels(mask, {4: RED}))
    np.testing.assert_array_equal(out.ab[:2], result.ab[:2])
    assert np.abs(out.ab[2] - result.ab[2]).max() > 40


def test_cancel_stops_between_planes():
    result, _ = make_stack(planes=4)
    cancel = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        if done == 1:
            cancel.set()

    with pytest.raises(Cancelled, match="after 1 of 4 planes"):
        apply_color_hints(
            result, ColorHints.from_points([[32.0, 40.0]], [RED]), progress=progress, cancel=cancel
        )
    assert seen == [0, 1]


# ----------------------------------------------------------------------------------- resolution


@pytest.mark.slow
def test_a_large_plane_is_solved_small_and_keeps_its_full_resolution_edge():
    # 2048 x 1536 = 3.1 Mpixel, solved on 2^16 working pixels (scale 7); the edge sits at
    # no working-pixel boundary, and the change must stop at it, not at the working pixel's
    result, inside, outside_by = disc_scene(size=1536, radius=401.3, centre=(760.4, 770.7))
    wide = np.pad(result.L, ((0, 0), (256, 256)), mode="edge")
    wide_ab = np.pad(result.ab, ((0, 0), (256, 256), (0, 0)), mode="edge")
    result = make_result(wide, wide_ab)
    inside = np.pad(inside, ((0, 0), (256, 256)))
    outside_by = np.pad(outside_by, ((0, 0), (256, 256)), mode="edge")
    out = apply_color_hints(result, ColorHints.from_points([[700.0, 1100.0]], [RED], radius=20))

    (target,) = oracle_ab([RED])
    core = outside_by < -3  # one working pixel is 7 of these: the rim's own pixels are mixed
    assert hue_gap(out.ab[core], target).max() < 20.0
    assert chroma(out.ab[core]).min() >= 0.7 * chroma(target)
    ok = (hue_gap(out.ab[inside], target) < 20.0) & (chroma(out.ab[inside]) >= 0.7 * chroma(target))
    assert ok.mean() > 0.998  # measured 0.9989
    change = np.abs(out.ab - result.ab).max(axis=-1)
    assert change[outside_by > 4].max() < 3.0  # measured 1.6
    # a plain bilinear upsampling of the change would colour half a working pixel (3-4 px) of
    # the dark side fully; here the band 2-4 px out changes by under 3 units at the 99th centile
    band = (outside_by > 2) & (outside_by <= 4)
    assert np.quantile(change[band], 0.99) < 3.0  # measured 1.2


# ----------------------------------------------------------------------------------- photograph


@pytest.mark.skipif(
    not (DEV / "kodak24" / "kodim01.png").exists(), reason="../shared/data/dev/kodak24 is not here"
)
def test_on_a_real_photograph_a_red_hint_fills_the_door_and_not_the_wall(tiny_generator):
    """Kodak's kodim01: a dark door (L* < 25 in the gray image) in a light stone wall, colourised
    by a (random-weight) network, then one red hint in the door."""
    from skimage.color import rgb2gray
    from skimage.io import imread

    from napari_chromagan.engine.colorize import Colorizer

    rgb = imread(DEV / "kodak24" / "kodim01.png")[..., :3]
    gray = (rgb2gray(rgb) * 255).astype(np.uint8)
    result = Colorizer(tiny_generator, "cpu").colorize(gray, with_class=False)
    point = (402, 145)
    labels, _ = ndimage.label(result.L < 25)
    door = labels == labels[point]
    assert 0.03 < door.mean() < 0.1  # the door, not the whole shadowed ground

    out = apply_color_hints(result, ColorHints.from_points([point], [RED]))
    (target,) = oracle_ab([RED])
    ok = (hue_gap(out.ab, target) < 20.0) & (chroma(out.ab) >= 0.7 * chroma(target))
    depth = ndimage.distance_transform_edt(door)
    assert ok[depth > 2].all()  # all of the door but its outermost 2 px (one working pixel)
    assert ok[door].mean() > 0.97  # measured 0.98
    # the wall across the door's edge (L* > 40, beyond 4 px) keeps the network's colours
    wall = (ndimage.distance_transform_edt(~door) > 4) & (result.L > 40)
    change = np.abs(out.ab - result.ab).max(axis=-1)[wall]
    assert change.max() < 3.0  # measured 0.24
    assert np.median(change) == 0.0
    assert np.abs(rgb2lab(out.rgb)[..., 0] - result.L).max() < 0.6
    np.testing.assert_array_equal(out.L, result.L)
