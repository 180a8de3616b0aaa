"""Tests of training.data: finding images, decoding, batches, sampling and the Lab encoding."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, ImageOps
from skimage.color import rgb2lab

from training import data
from training.data import (
    Batch,
    ColorizationDataset,
    ResumableSampler,
    batch_to_lab,
    collate,
    find_images,
    make_loader,
)

SHARED = Path("/work/shared/data/train/imagenet-sample")
GRAY = 128 / 255


def _save(path: Path, array: np.ndarray, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)
    return path


def _photo(seed: int, shape: tuple[int, int] = (48, 64)) -> np.ndarray:
    """A smooth colourful uint8 (H, W, 3) image (JPEG-friendly)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]] / max(shape)
    channels = [
        np.sin(6 * x * rng.uniform(0.5, 2) + 4 * y * rng.uniform(0.5, 2) + c) for c in range(3)
    ]
    return ((np.stack(channels, axis=-1) + 1) * 127.5).astype(np.uint8)


def _loader_epoch(dataset, num_workers: int, batch_size: int = 4, epoch: int = 0, **kw):
    sampler = ResumableSampler(len(dataset), shuffle=False, **kw)
    dataset.set_epoch(epoch)
    sampler.set_epoch(epoch)
    return list(make_loader(dataset, sampler, batch_size, num_workers=num_workers))


# ----------------------------------------------------------------------------- find_images


def test_find_images_in_nested_folders(tmp_path):
    img = np.zeros((4, 4, 3), np.uint8)
    for rel in ["b/2.png", "b/10.JPG", "a.jpeg", "a/z/deep.tif", "c.webp", "d.bmp"]:
        _save(tmp_path / rel, img)
    _save(tmp_path / ".hidden.png", img)
    _save(tmp_path / ".cache" / "inside.png", img)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "folder.png").mkdir()  # a folder with an image's name is not an image

    found = find_images(tmp_path)
    rel = [p.relative_to(tmp_path).as_posix() for p in found]
    assert rel == ["a/z/deep.tif", "a.jpeg", "b/10.JPG", "b/2.png", "c.webp", "d.bmp"]
    assert find_images(str(tmp_path)) == found  # str or Path, same answer
    # the command line finds the same files in the same order: a folder is searched one way
    from napari_chromagan.files.imageio import collect_inputs

    assert collect_inputs([tmp_path]) == found


def test_find_images_from_a_list_file(tmp_path):
    img = np.zeros((4, 4, 3), np.uint8)
    a = _save(tmp_path / "imgs" / "a.png", img)
    b = _save(tmp_path / "elsewhere" / "b.jpg", img)
    listing = tmp_path / "lists" / "train.txt"
    listing.parent.mkdir()
    listing.write_text(
        f"# training images\n\n../imgs/a.png\n  {b}  \n# ../imgs/nope.png\nmissing.png\n"
    )
    found = find_images(listing)
    assert [p.resolve() for p in found] == [
        a.resolve(),
        b.resolve(),
        (listing.parent / "missing.png").resolve(),
    ]
    assert find_images(a) == [a]  # a single image is a one-image data set


def test_find_images_errors_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder or file"):
        find_images(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=r"no images found.*\.bmp .*\.jpg .*\.webp"):
        find_images(tmp_path / "empty")
    blank = tmp_path / "blank.txt"
    blank.write_text("# only a comment\n\n")
    with pytest.raises(ValueError, match="lists no images"):
        find_images(blank)
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("x/1.jpg\nx/2.jpg\n")
    with pytest.raises(FileNotFoundError, match="relative to the list file's folder"):
        find_images(wrong)
    binary = tmp_path / "weights.bin"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(ValueError, match="UTF-8 text file"):
        find_images(binary)


# ----------------------------------------------------------------------------- bad files


@pytest.fixture
def messy(tmp_path) -> list[Path]:
    """6 good colour images, 1 gray one, and 4 unreadable 'images'."""
    paths = [_save(tmp_path / f"ok{i}.png", _photo(i)) for i in range(5)]
    paths.append(_save(tmp_path / "ok5.jpg", _photo(5), quality=90))
    paths.append(_save(tmp_path / "gray.png", _photo(6)[..., 1]))
    (tmp_path / "empty.jpg").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(_photo(7, (200, 200))).save(buf, format="JPEG", quality=95)
    (tmp_path / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (tmp_path / "text.png").write_text("this is not a PNG\n" * 10)
    (tmp_path / "dir.jpg").mkdir()
    bad = [tmp_path / n for n in ("empty.jpg", "truncated.jpg", "text.png", "dir.jpg")]
    # interleave, so that some batches are partly and one wholly unusable
    return [*paths[:2], *bad, *paths[2:]]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_bad_files_are_skipped_and_counted_through_a_real_loader(messy, num_workers):
    dataset = ColorizationDataset(messy, 32)
    batches = _loader_epoch(dataset, num_workers, batch_size=2)
    assert len(batches) == 6  # the epoch completes
    assert all(isinstance(b, Batch) for b in batches)
    assert sum(b.skipped["unreadable"] for b in batches) == 4
    assert sum(b.skipped["skipped-grayscale"] for b in batches) == 0
    assert sum(b.grayscale for b in batches) == 1
    assert [len(b) for b in batches] == [2, 0, 0, 2, 2, 1]
    assert batches[1].rgb.shape == (0, 3, 32, 32) and batches[1].indices.shape == (0,)
    kept = torch.cat([b.indices for b in batches]).tolist()
    assert kept == [0, 1, 6, 7, 8, 9, 10]
    for b in batches:
        assert b.rgb.dtype == torch.uint8 and b.indices.dtype == torch.int64
    # the flags are shared with the workers: each bad path was logged, and only once
    assert dataset._warned.nonzero().flatten().tolist() == [2, 3, 4, 5]


def test_unreadable_reason_is_logged_once_per_path(messy, caplog):
    dataset = ColorizationDataset(messy, 16)
    with caplog.at_level(logging.WARNING, logger="training.data"):
        for epoch in range(2):
            _loader_epoch(dataset, 0, epoch=epoch)
        sample = dataset[3]
    assert sample["status"] == "unreadable"
    assert torch.equal(sample["rgb"], torch.zeros(3, 16, 16, dtype=torch.uint8))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4
    for name in ("empty.jpg", "truncated.jpg", "text.png", "dir.jpg"):
        assert sum(name in m for m in messages) == 1


# ----------------------------------------------------------------------------- gray sources


def test_gray_sources_are_kept_with_zero_chroma_or_skipped(tmp_path):
    rgb = _photo(1)
    gray_rgb = np.repeat(_photo(2)[..., :1], 3, axis=-1)
    noisy = gray_rgb.copy()
    blue = noisy[::3, ::5, 2]
    noisy[::3, ::5, 2] = np.where(blue > 250, blue - 2, blue + 2)  # within the tolerance: gray
    paths = [
        _save(tmp_path / "color.png", rgb),
        _save(tmp_path / "L.png", rgb[..., 0]),
        _save(tmp_path / "rgb-gray.jpg", gray_rgb, quality=85),  # as ImageNet stores some
        _save(tmp_path / "noisy.png", noisy),
        _save(tmp_path / "LA.png", np.stack([rgb[..., 0], rgb[..., 1]], -1)),
        _save(
            tmp_path / "pale.png", np.clip(gray_rgb + np.array([0, 0, 6]), 0, 255).astype(np.uint8)
        ),
    ]
    kept = ColorizationDataset(paths, 24)
    statuses = [kept[i]["status"] for i in range(len(paths))]
    assert statuses == ["ok", "grayscale", "grayscale", "grayscale", "grayscale", "ok"]
    batch = collate([kept[i] for i in range(len(paths))])
    assert batch.grayscale == 4 and len(batch) == 6
    assert (batch.rgb[1:5, 0] == batch.rgb[1:5, 1]).all() and (
        batch.rgb[1:5, 1] == batch.rgb[1:5, 2]
    ).all()
    L, ab = batch_to_lab(batch.rgb)
    assert torch.allclose(ab[1:5], torch.full_like(ab[1:5], GRAY), atol=1e-4)
    assert (ab[0] - GRAY).abs().max() > 0.1 and (ab[5] - GRAY).abs().max() > 0.005
    assert L[1:5].std() > 0.05  # a real picture, not a blank

    skipping = ColorizationDataset(paths, 24, grayscale="skip")
    batches = _loader_epoch(skipping, 0, batch_size=6)
    assert batches[0].skipped == {"unreadable": 0, "skipped-grayscale": 4}
    assert batches[0].indices.tolist() == [0, 5] and batches[0].grayscale == 0


# ----------------------------------------------------------------------------- formats


def test_16_bit_float_alpha_palette_and_exif_inputs(tmp_path):
    rgb = _photo(3, (20, 30))
    rgb16 = rgb.astype(np.uint16) * 257
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb16, photometric="rgb")
    tifffile.imwrite(tmp_path / "float.tiff", rgb.astype(np.float32) / 255, photometric="rgb")
    rgba = np.concatenate([rgb, np.zeros((20, 30, 1), np.uint8)], axis=-1)
    rgba[:, :15, 3] = 255  # left half opaque, right half transparent
    _save(tmp_path / "rgba.png", rgba)
    _save(tmp_path / "palette.png", rgb, format="PNG")
    Image.open(tmp_path / "palette.png").quantize(16).save(tmp_path / "palette.png")
    gray16 = (np.linspace(0, 60000, 20 * 30).reshape(20, 30)).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "gray16.png")
    oriented = Image.fromarray(rgb)
    exif = oriented.getexif()
    exif[0x0112] = 6  # display rotated by 90 degrees
    oriented.save(tmp_path / "exif.jpg", exif=exif, quality=95)

    names = ["rgb16.tif", "float.tiff", "rgba.png", "palette.png", "gray16.png", "exif.jpg"]
    ds = ColorizationDataset([tmp_path / n for n in names], 30)
    s = {n: ds[i] for i, n in enumerate(names)}
    assert [s[n]["status"] for n in names] == ["ok", "ok", "ok", "ok", "grayscale", "ok"]
    squashed = np.array(Image.fromarray(rgb).resize((30, 30), Image.Resampling.BILINEAR))
    expected = torch.from_numpy(squashed).permute(2, 0, 1)
    for n in ("rgb16.tif", "float.tiff"):
        assert (s[n]["rgb"].int() - expected).abs().max() <= 1, n
    assert (s["rgba.png"]["rgb"][:, :, :13].int() - expected[:, :, :13]).abs().max() <= 1
    assert (s["rgba.png"]["rgb"][:, :, 17:] == 255).all()  # transparent -> white
    with Image.open(tmp_path / "palette.png") as im:
        assert im.mode == "P"
        quantized = np.array(im.convert("RGB").resize((30, 30), Image.Resampling.BILINEAR))
    assert torch.equal(s["palette.png"]["rgb"], torch.from_numpy(quantized).permute(2, 0, 1))
    gray = s["gray16.png"]["rgb"]
    assert gray[0, 0, 0] < 5 and gray[0, -1, -1] > 250  # the 16-bit range is spread over 8 bits
    with Image.open(tmp_path / "exif.jpg") as im:
        upright = np.array(ImageOps.exif_transpose(im).resize((30, 30), Image.Resampling.BILINEAR))
    assert ImageOps.exif_transpose(Image.open(tmp_path / "exif.jpg")).size == (20, 30)
    assert torch.equal(s["exif.jpg"]["rgb"], torch.from_numpy(upright).permute(2, 0, 1))


# ----------------------------------------------------------------------------- resizing


def test_squash_keeps_the_whole_image(tmp_path):
    stripes = np.zeros((40, 160, 3), np.uint8)  # four vertical stripes: red, green, blue, white
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]):
        stripes[:, 40 * i : 40 * (i + 1)] = colour
    ds = ColorizationDataset([_save(tmp_path / "s.png", stripes)], 32, resize="squash")
    out = ds[0]["rgb"]
    assert out.shape == (3, 32, 32)
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]):
        block = out[:, :, 8 * i + 1 : 8 * i + 7]
        assert torch.equal(
            block, torch.tensor(colour, dtype=torch.uint8)[:, None, None].expand_as(block)
        )


def test_crop_is_a_window_of_the_short_side_resize(tmp_path):
    image = _photo(4, (60, 90))
    path = _save(tmp_path / "p.png", image)
    S = 40
    full = np.asarray(Image.fromarray(image).resize((60, 40), Image.Resampling.BILINEAR)).astype(
        int
    )
    ds = ColorizationDataset([path], S, resize="crop", seed=3)
    for epoch in range(4):
        ds.set_epoch(epoch)
        crop = ds[0]["rgb"].permute(1, 2, 0).numpy().astype(int)
        assert crop.shape == (S, S, 3)
        errors = [
            np.abs(c - full[:, x : x + S]).max()
            for x in range(60 - S + 1)
            for c in (crop, crop[:, ::-1])
        ]
        assert min(errors) <= 1


def test_crop_augmentation_depends_on_seed_epoch_and_index_only(tmp_path):
    paths = [_save(tmp_path / f"{i}.png", _photo(i, (50, 80))) for i in range(6)]

    def draw(seed: int, epoch: int) -> torch.Tensor:
        ds = ColorizationDataset(paths, 32, resize="crop", seed=seed)
        ds.set_epoch(epoch)
        return torch.stack([ds[i]["rgb"] for i in range(len(paths))])

    first = draw(0, 1)
    assert torch.equal(first, draw(0, 1))
    assert not torch.equal(first, draw(0, 2))
    assert not torch.equal(first, draw(1, 1))
    # the same through a loader with workers, in any order, and in every epoch's own way
    ds = ColorizationDataset(paths, 32, resize="crop", seed=0)
    batches = _loader_epoch(ds, 2, batch_size=4, epoch=1)
    assert torch.equal(torch.cat([b.rgb for b in batches]), first)
    assert torch.cat([b.indices for b in batches]).tolist() == list(range(6))


# ----------------------------------------------------------------------------- sampler


def test_sampler_covers_every_index_once_per_epoch_in_a_new_order():
    sampler = ResumableSampler(10, seed=5)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert sorted(order) == list(range(10)) and len(sampler) == 10
        orders.append(order)
    assert orders[0] != orders[1] != orders[2]
    sampler.set_epoch(1)
    assert list(sampler) == orders[1]  # a function of (seed, epoch)
    expected = torch.randperm(10, generator=torch.Generator().manual_seed(5 + 2)).tolist()
    assert orders[2] == expected  # DistributedSampler's permutation
    assert list(ResumableSampler(4, shuffle=False)) == [0, 1, 2, 3]


def test_sampler_shards_are_equal_disjoint_and_cover_everything():
    shards = [ResumableSampler(11, seed=1, rank=r, world_size=2) for r in range(2)]
    for s in shards:
        s.set_epoch(4)
    a, b = (list(s) for s in shards)
    assert len(a) == len(b) == len(shards[0]) == 6
    assert set(a) | set(b) == set(range(11))
    assert len(set(a) & set(b)) == 1  # the padding repeats exactly one sample
    even = [list(ResumableSampler(10, seed=1, rank=r, world_size=2)) for r in range(2)]
    assert not set(even[0]) & set(even[1]) and sorted(even[0] + even[1]) == list(range(10))
    dropped = [list(ResumableSampler(11, rank=r, world_size=2, drop_last=True)) for r in range(2)]
    assert len(dropped[0]) == len(dropped[1]) == 5 and not set(dropped[0]) & set(dropped[1])
    with pytest.raises(ValueError, match="rank"):
        ResumableSampler(10, rank=2, world_size=2)


def test_set_start_yields_the_tail_of_the_uninterrupted_order_for_one_epoch():
    full = ResumableSampler(13, seed=2, rank=1, world_size=3)
    full.set_epoch(7)
    order = list(full)
    resumed = ResumableSampler(13, seed=2, rank=1, world_size=3)
    resumed.set_epoch(7)
    resumed.set_start(3)
    assert list(resumed) == order[3:] and len(resumed) == len(order) - 3
    assert list(resumed) == order[3:]  # iterating again (e.g. len() then iter) is the same
    resumed.set_epoch(8)
    full.set_epoch(8)
    assert list(resumed) == list(full) and len(resumed) == 5  # the next epoch is whole
    resumed.set_start(5)
    assert list(resumed) == [] and len(resumed) == 0
    with pytest.raises(ValueError, match="start"):
        resumed.set_start(6)


def test_resumed_loader_sees_exactly_the_remaining_batches(tmp_path):
    paths = [_save(tmp_path / f"{i}.png", _photo(i, (20, 20))) for i in range(10)]
    ds = ColorizationDataset(paths, 8)
    sampler = ResumableSampler(10, seed=9)
    sampler.set_epoch(2)
    whole = [b.indices.tolist() for b in make_loader(ds, sampler, 3)]
    sampler.set_start(6)  # two batches done
    rest = [b.indices.tolist() for b in make_loader(ds, sampler, 3)]
    assert rest == whole[2:]


def test_loader_leaves_the_global_rng_alone(tmp_path):
    ds = ColorizationDataset([_save(tmp_path / "a.png", _photo(0, (8, 8)))], 8)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    list(make_loader(ds, ResumableSampler(1), 1))
    assert torch.equal(torch.rand(3), expected)


class _WorkerRandom(torch.utils.data.Dataset):
    """What each worker's global RNGs give: the same after a resume as without one."""

    def __init__(self) -> None:
        self.seed, self.epoch = 4, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict:
        value = np.random.randint(1 << 30) + torch.randint(1 << 30, ()).item()  # noqa: NPY002
        return {
            "rgb": torch.full((3, 1, 1), value % 251, dtype=torch.uint8),
            "index": index,
            "status": "ok",
        }


def test_worker_rngs_depend_on_seed_epoch_and_worker_only():
    def run(loader, ds, sampler, epoch):
        ds.set_epoch(epoch)
        sampler.set_epoch(epoch)
        return torch.cat([b.rgb.flatten() for b in loader]).tolist()

    ds, sampler = _WorkerRandom(), ResumableSampler(4, shuffle=False)
    loader = make_loader(ds, sampler, 1, num_workers=2)
    uninterrupted = [run(loader, ds, sampler, e) for e in range(2)]
    ds2, sampler2 = _WorkerRandom(), ResumableSampler(4, shuffle=False)
    resumed = run(make_loader(ds2, sampler2, 1, num_workers=2), ds2, sampler2, 1)
    assert resumed == uninterrupted[1] and uninterrupted[0] != uninterrupted[1]


# ----------------------------------------------------------------------------- Lab


def test_batch_to_lab_matches_skimage():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(2, 3, 16, 16), dtype=np.uint8)
    rgb[0, :, 0, :4] = [[0, 255, 128, 255], [0, 255, 128, 0], [0, 255, 128, 0]]  # extremes
    L, ab = batch_to_lab(torch.from_numpy(rgb))
    assert L.shape == (2, 1, 16, 16) and ab.shape == (2, 2, 16, 16)
    assert L.dtype == ab.dtype == torch.float32
    lab = rgb2lab(np.moveaxis(rgb, 1, -1) / 255.0)
    np.testing.assert_allclose(L[:, 0].numpy(), lab[..., 0] / 100, atol=1e-3)
    np.testing.assert_allclose(
        np.moveaxis(ab.numpy(), 1, -1), (lab[..., 1:] + 128) / 255, atol=1e-3
    )
    assert 0 <= L.min() and L.max() <= 1 and 0 < ab.min() and ab.max() < 1
    with pytest.raises(TypeError, match="uint8"):
        batch_to_lab(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="shape"):
        batch_to_lab(torch.zeros(3, 2, 2, dtype=torch.uint8))


def test_collate_of_nothing_usable_keeps_the_shape():
    empty = {"rgb": torch.zeros(3, 5, 5, dtype=torch.uint8), "status": "unreadable"}
    batch = collate([{**empty, "index": 0}, {**empty, "index": 1, "status": "skipped-grayscale"}])
    assert batch.rgb.shape == (0, 3, 5, 5) and batch.indices.dtype == torch.int64
    assert batch.skipped == {"unreadable": 1, "skipped-grayscale": 1} and batch.grayscale == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
def test_pin_memory_through_the_loader(tmp_path):
    paths = [_save(tmp_path / f"{i}.png", _photo(i, (16, 16))) for i in range(4)]
    ds = ColorizationDataset(paths, 8)
    loader = make_loader(ds, ResumableSampler(4), 2, num_workers=2, pin_memory=True)
    batches = list(loader)
    assert all(b.rgb.is_pinned() and b.indices.is_pinned() for b in batches)
    L, ab = batch_to_lab(batches[0].rgb.cuda(non_blocking=True))
    assert L.is_cuda and ab.shape == (2, 2, 8, 8)


# ----------------------------------------------------------------------------- real data


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"the shared training images are not at {SHARED}")
def test_real_images_load_through_the_loader():
    paths = find_images(SHARED)[:16]
    ds = ColorizationDataset(paths, 224)
    batches = _loader_epoch(ds, 2, batch_size=4)
    assert len(batches) == 4
    for b in batches:
        assert b.rgb.shape == (4, 3, 224, 224) and b.rgb.dtype == torch.uint8
        assert b.skipped == {"unreadable": 0, "skipped-grayscale": 0}
        assert b.rgb.float().std() > 10  # real pictures, not zeros
    L, ab = batch_to_lab(batches[0].rgb)
    assert 0 <= L.min() and L.max() <= 1 and 0 < ab.min() and ab.max() < 1


def test_module_has_the_documented_api():
    for name in data.__all__:
        assert hasattr(data, name)
