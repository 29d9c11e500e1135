#!/usr/bin/env python3
"""
Independent re-implementation of CleanVision's image-property issue scores
(cleanvision 0.3.7 / Pillow 13.0.0 / numpy 2.x), checked against
cleanvision.Imagelab.find_issues.

Usage:  /tmp/cv-venv/bin/python /work/notes/cleanvision_ref.py [outdir=/tmp/cvimgs] [--mutations]

PIL is used ONLY to (a) generate the synthetic test images and (b) decode a
file into its native-mode raw array (+ palette for "P").  Everything CleanVision
does with PIL afterwards (resize, convert('L'), FIND_EDGES, ImageStat,
histogram, entropy) and with numpy (percentile, std) is re-implemented below
with explicit integer / float64 arithmetic, exactly as written in
/work/notes/cleanvision_spec.md.
"""
import math
import os
import shutil
import sys

import numpy as np
from PIL import Image, ImageFilter

OUT = next((a for a in sys.argv[1:] if not a.startswith("--")), "/tmp/cvimgs")

# ----------------------------------------------------------------------------
# 1. synthetic data set
# ----------------------------------------------------------------------------


def make_images(out):
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    rng = np.random.default_rng(12345)

    def noise(w, h, lo=0, hi=256, c=3):
        shape = (h, w, c) if c > 1 else (h, w)
        return rng.integers(lo, hi, size=shape, dtype=np.uint8)

    def save(name, arr_or_img, mode=None, **kw):
        im = arr_or_img if isinstance(arr_or_img, Image.Image) else Image.fromarray(arr_or_img, mode) if mode else Image.fromarray(arr_or_img)
        im.save(os.path.join(out, name), **kw)

    # plain RGB noise of many sizes (covers: no resize, horizontal-first, vertical-first passes)
    for i, (w, h) in enumerate([(64, 64), (65, 48), (100, 100), (640, 480), (480, 640),
                                (333, 129), (129, 333), (1000, 1000), (257, 255)]):
        save(f"a{i:02d}_rgb_noise_{w}x{h}.png", noise(w, h))
    # structured RGB (smooth + edges) so percentiles/entropy are not trivial
    yy, xx = np.mgrid[0:300, 0:400]
    grad = np.stack([(xx * 255 // 399), (yy * 255 // 299), ((xx + yy) * 255 // 698)], -1).astype(np.uint8)
    save("b00_rgb_gradient_400x300.png", grad)
    checker = (((xx // 16 + yy // 16) % 2) * 255).astype(np.uint8)[:128, :128]
    save("b01_checker_L_128x128.png", checker)
    save("b02_checker_rgb_128x128.png", np.stack([checker, 255 - checker, checker // 2], -1))
    # dark / light
    save("c00_dark_rgb_200x150.png", noise(200, 150, 0, 40))
    save("c01_dark_rgb_150x200.jpg", noise(150, 200, 0, 60), quality=90)
    save("c02_light_rgb_150x200.png", noise(150, 200, 220, 256))
    save("c03_light_rgb_300x200.jpg", noise(300, 200, 200, 256), quality=85)
    save("c04_black_rgb_100x100.png", np.zeros((100, 100, 3), np.uint8))
    save("c05_white_rgb_100x100.png", np.full((100, 100, 3), 255, np.uint8))
    save("c06_gray_rgb_120x80.png", np.full((80, 120, 3), 128, np.uint8))
    # blurry
    blur = Image.fromarray(noise(300, 200)).filter(ImageFilter.GaussianBlur(6))
    save("d00_blurry_rgb_300x200.png", blur)
    save("d01_blurry_rgb_300x200.jpg", blur, quality=75)
    save("d02_blurry_L_80x80.png", Image.fromarray(noise(80, 80, c=1)).filter(ImageFilter.GaussianBlur(3)))
    save("d04_very_blurry_rgb_600x400.jpg", Image.fromarray(noise(600, 400)).filter(ImageFilter.GaussianBlur(25)), quality=90)
    big_checker = (((xx[:, :] // 50 + yy[:, :] // 50) % 2) * 200 + 30).astype(np.uint8)
    save("d05_blurry_checker_L_400x300.png", Image.fromarray(big_checker).filter(ImageFilter.GaussianBlur(12)))
    save("d03_blurry_grad_rgb_512x384.png", Image.fromarray(grad).resize((512, 384)).filter(ImageFilter.GaussianBlur(10)))
    # grayscale L
    save("e00_L_noise_120x90.png", noise(120, 90, c=1))
    save("e01_L_noise_300x300.jpg", noise(300, 300, 30, 200, c=1), quality=90)
    save("e02_rgb_but_gray_200x200.png", np.repeat(noise(200, 200, c=1)[..., None], 3, -1))
    # tiny / odd aspect ratio
    save("f00_rgb_1x1.png", noise(1, 1))
    save("f01_rgb_2x2.png", noise(2, 2))
    save("f02_rgb_3x3.png", noise(3, 3))
    save("f03_rgb_8x8.png", noise(8, 8))
    save("f04_L_1x100.png", noise(1, 100, c=1))
    save("f05_rgb_100x1.png", noise(100, 1))
    save("f06_rgb_3x300.png", noise(3, 300))
    save("f07_rgb_1000x20.png", noise(1000, 20))
    save("f08_rgb_20x1000.jpg", noise(20, 1000), quality=95)
    save("f09_rgb_2000x100.png", noise(2000, 100))
    save("f10_rgb_1600x1200.jpg", noise(1600, 1200), quality=80)
    # RGBA (alpha premultiply in resize)
    rgba = noise(200, 100, c=4)
    rgba[:10, :, 3] = 0
    rgba[10:20, :, 3] = 255
    save("g00_rgba_200x100.png", rgba)
    save("g01_rgba_50x50.png", noise(50, 50, c=4))
    a = noise(90, 70, c=4)
    a[..., 3] = 255
    save("g02_rgba_opaque_90x70.png", a)
    # palette images
    save("h00_P_adaptive_150x150.png", Image.fromarray(noise(150, 150)).quantize(64))
    save("h01_P_grad16_90x70.png", Image.fromarray(grad[:70, :90]).quantize(16))
    save("h02_P_40x40.png", Image.fromarray(noise(40, 40)).quantize(200))
    # bilevel
    save("i00_bilevel_130x70.png", Image.fromarray(noise(130, 70, c=1)).convert("1"))
    # duplicates
    shutil.copy(os.path.join(out, "a02_rgb_noise_100x100.png"), os.path.join(out, "j00_dup_of_a02.png"))
    save("j01_near_dup_of_b00.jpg", Image.fromarray(grad), quality=92)


# ----------------------------------------------------------------------------
# 2. reference implementation (numpy only, PIL only for decoding)
# ----------------------------------------------------------------------------

def decode(path):
    """What FSDataset.__getitem__ returns: Image.open(f).copy(), native mode."""
    im = Image.open(path)
    im.load()
    mode = im.mode
    arr = np.asarray(im).copy()
    pal = None
    if mode == "P":
        p = im.getpalette("RGB")  # list of 3*n ints
        pal = np.zeros((256, 3), np.int64)
        p = np.array(p, np.int64).reshape(-1, 3)
        pal[: len(p)] = p
    if mode == "1":
        arr = arr.astype(bool)
    return mode, arr, pal


# ---- numpy.percentile(method="linear"), written out -------------------------
def percentile_linear(values, q):
    a = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = a.size
    qq = q / 100.0                      # np.true_divide(q, 100)
    vi = (n - 1) * qq                   # virtual index
    if vi >= n - 1:
        return a[-1]
    if vi < 0:
        return a[0]
    prev = math.floor(vi)
    nxt = prev + 1
    g = vi - prev
    lo, hi = a[prev], a[nxt]
    d = hi - lo
    if g >= 0.5:
        return hi - d * (1.0 - g)
    return lo + d * g


# ---- Pillow convert("L") ----------------------------------------------------
def L24(r, g, b):
    r = r.astype(np.int64); g = g.astype(np.int64); b = b.astype(np.int64)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def to_L(mode, arr, pal):
    if mode == "L":
        return arr.astype(np.uint8)
    if mode in ("RGB", "RGBA", "RGBX"):
        return L24(arr[..., 0], arr[..., 1], arr[..., 2])
    if mode == "P":
        idx = arr.astype(np.int64)
        return L24(pal[idx, 0], pal[idx, 1], pal[idx, 2])
    if mode == "1":
        return np.where(arr, 255, 0).astype(np.uint8)
    if mode == "LA":
        return arr[..., 0].astype(np.uint8)
    raise NotImplementedError(mode)


# ---- Pillow resize (BICUBIC, 8bpc fixed point) ---------------------------------
PRECISION_BITS = 22


def bicubic(x):
    a = -0.5
    if x < 0.0:
        x = -x
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def precompute_coeffs(in_size, out_size):
    """Resample.c precompute_coeffs + normalize_coeffs_8bpc, box = (0, in_size)."""
    scale = float(in_size) / out_size          # (double)(in1 - in0) / outSize
    filterscale = scale if scale >= 1.0 else 1.0
    support = 2.0 * filterscale                # BICUBIC support = 2.0
    inv = 1.0 / filterscale
    K = np.zeros((out_size, in_size), np.int64)  # dense int32 coefficient matrix
    for xx in range(out_size):
        center = 0.0 + (xx + 0.5) * scale
        xmin = int(center - support + 0.5)       # C (int) cast = trunc toward 0
        if xmin < 0:
            xmin = 0
        xmax = int(center + support + 0.5)
        if xmax > in_size:
            xmax = in_size
        xmax -= xmin
        ks = []
        ww = 0.0
        for x in range(xmax):
            w = bicubic((x + xmin - center + 0.5) * inv)
            ks.append(w)
            ww += w
        if ww != 0.0:
            ks = [k / ww for k in ks]
        for x, k in enumerate(ks):
            if k < 0:
                K[xx, xmin + x] = math.trunc(-0.5 + k * (1 << PRECISION_BITS))
            else:
                K[xx, xmin + x] = math.trunc(0.5 + k * (1 << PRECISION_BITS))
    return K


def clip8_fixed(ss):
    v = ss >> PRECISION_BITS          # arithmetic shift (floor)
    return np.clip(v, 0, 255).astype(np.uint8)


def resample_h(a, out_w):  # a: (H, W, C) uint8
    K = precompute_coeffs(a.shape[1], out_w)
    ss = (1 << (PRECISION_BITS - 1)) + np.einsum("hwc,ow->hoc", a.astype(np.int64), K)
    return clip8_fixed(ss)


def resample_v(a, out_h):
    K = precompute_coeffs(a.shape[0], out_h)
    ss = (1 << (PRECISION_BITS - 1)) + np.einsum("hwc,oh->owc", a.astype(np.int64), K)
    return clip8_fixed(ss)


def resize_bicubic(a, w, h):
    """ImagingResampleInner: pass order decided by horizontal_first."""
    squeeze = a.ndim == 2
    if squeeze:
        a = a[..., None]
    H, W = a.shape[:2]
    need_h = w != W
    need_v = h != H
    horizontal_first = not ((H - h) > 0 and (H - h) > (W - w) * 2)
    if horizontal_first:
        if need_h:
            a = resample_h(a, w)
        if need_v:
            a = resample_v(a, h)
    else:
        if need_v:
            a = resample_v(a, h)
        if need_h:
            a = resample_h(a, w)
    return a[..., 0] if squeeze else a


def resize_nearest(a, w, h):
    """ImagingScaleAffine (mode P / 1): accumulating double coordinates."""
    H, W = a.shape[:2]
    a0 = float(W) / w
    a4 = float(H) / h
    xs = []
    xo = a0 * 0.5
    for _ in range(w):
        xs.append(int(xo) if xo >= 0 else -1)
        xo += a0
    ys = []
    yo = a4 * 0.5
    for _ in range(h):
        ys.append(int(yo) if yo >= 0 else -1)
        yo += a4
    return a[np.array(ys)][:, np.array(xs)]


def muldiv255(a, b):
    t = a * b + 128
    return ((t >> 8) + t) >> 8


def premultiply(rgba):
    x = rgba.astype(np.int64)
    out = x.copy()
    for c in range(3):
        out[..., c] = muldiv255(x[..., c], x[..., 3])
    return out.astype(np.uint8)


def unpremultiply(rgba):
    x = rgba.astype(np.int64)
    out = x.copy()
    al = x[..., 3]
    partial = (al != 0) & (al != 255)
    for c in range(3):
        v = np.where(partial, (255 * x[..., c]) // np.where(al == 0, 1, al), x[..., c])
        out[..., c] = np.clip(v, 0, 255)
    return out.astype(np.uint8)


def pil_resize_default(mode, arr, w, h):
    """Image.resize(size) with resample=None."""
    if arr.shape[1] == w and arr.shape[0] == h:
        return arr
    if mode in ("1", "P"):
        return resize_nearest(arr, w, h)
    if mode == "RGBA":
        return unpremultiply(resize_bicubic(premultiply(arr), w, h))
    if mode == "LA":
        raise NotImplementedError
    return resize_bicubic(arr, w, h)


# ---- FIND_EDGES ------------------------------------------------------------
def find_edges(g):
    H, W = g.shape
    if W < 3 or H < 3:
        return g.copy()
    x = g.astype(np.int64)
    out = g.copy()
    c = x[1:-1, 1:-1]
    nb = (x[:-2, :-2] + x[:-2, 1:-1] + x[:-2, 2:] + x[1:-1, :-2] + x[1:-1, 2:]
          + x[2:, :-2] + x[2:, 1:-1] + x[2:, 2:])
    out[1:-1, 1:-1] = np.clip(8 * c - nb, 0, 255).astype(np.uint8)
    return out


# ---- histograms ------------------------------------------------------------
def band_arrays(mode, arr):
    """The uint8 planes Pillow's ImagingGetHistogram counts (one per band)."""
    if mode in ("L", "P"):
        return [arr]
    if mode == "1":
        return [np.where(arr, 255, 0).astype(np.uint8)]
    return [arr[..., c] for c in range(arr.shape[2])]


def histogram(mode, arr):
    return np.concatenate([np.bincount(b.ravel(), minlength=256)[:256] for b in band_arrays(mode, arr)])


def entropy(mode, arr):
    h = histogram(mode, arr).astype(np.int64)
    fsum = float(h.sum())
    e = 0.0
    for c in h:
        p = float(c) / fsum
        if p != 0.0:
            e += p * math.log(p) * 1.4426950408889634  # M_LOG2E
    return -e


def stat_mean0(mode, arr):
    h = histogram(mode, arr)
    return [int(sum(j * int(h[b * 256 + j]) for j in range(256))) / int(h[b * 256:(b + 1) * 256].sum())
            for b in range(len(h) // 256)]


# ---- properties -------------------------------------------------------------
def brightness_pixel(r, g, b):
    return np.sqrt(0.241 * (r * r) + 0.691 * (g * g) + 0.068 * (b * b)) / 255


def properties(path):
    mode, arr, pal = decode(path)
    H, W = arr.shape[:2]
    p = {}
    # brightness percentiles (on np.asarray(image): raw indices for P, bool for 1)
    if arr.ndim == 3:
        r, g, b = (arr[..., i].astype(np.int64) for i in range(3))
        pb = brightness_pixel(r, g, b)
    else:
        pb = arr / 255.0
    for q in [1, 5, 10, 15, 90, 95, 99]:
        p[f"brightness_perc_{q}"] = percentile_linear(pb, q)
    means = stat_mean0(mode, arr)
    if len(means) == 3:
        rm, gm, bm = means
    else:
        rm = gm = bm = means[0]
    p["brightness"] = float(np.sqrt(0.241 * (rm * rm) + 0.691 * (gm * gm) + 0.068 * (bm * bm)) / 255)
    # aspect ratio / size
    p["aspect_ratio"] = min(W / H, H / W)
    p["size"] = math.sqrt(W) * math.sqrt(H)
    # entropy
    p["entropy"] = entropy(mode, arr)
    # blurriness
    ratio = max(W, H) / 64
    if ratio > 1:
        nw = max(int(W // ratio), 1)
        nh = max(int(H // ratio), 1)
        small = pil_resize_default(mode, arr, nw, nh)
    else:
        small = arr
    gray = to_L(mode, small, pal)
    edges = find_edges(gray)
    he = np.bincount(edges.ravel(), minlength=256)
    n = int(he.sum())
    s = int(sum(j * int(he[j]) for j in range(256)))
    s2 = int(sum(j * j * int(he[j]) for j in range(256)))
    var = (s2 - (s ** 2) / n) / n
    p["blurriness"] = math.sqrt(var)
    hg = np.bincount(gray.ravel(), minlength=256).astype(np.int64)
    N = int(hg.sum())
    # exact integer form of np.std(hist): var = (256*sum(h^2) - N^2) / 256^2
    p["blurriness_grayscale_std"] = math.sqrt((256 * int((hg * hg).sum()) - N * N) / 65536.0)
    p["color_space"] = mode
    return p


def scores(props_list):
    """Dataset-level: raw properties -> scores / flags with default params."""
    n = len(props_list)
    col = lambda k: np.array([p[k] for p in props_list], dtype=np.float64)
    S, F = {}, {}
    S["dark"] = col("brightness_perc_99")
    F["dark"] = S["dark"] < 0.32
    S["light"] = 1 - col("brightness_perc_5")
    F["light"] = S["light"] < 0.05
    S["odd_aspect_ratio"] = col("aspect_ratio")
    F["odd_aspect_ratio"] = S["odd_aspect_ratio"] < 0.35
    S["low_information"] = np.minimum(0.1 * col("entropy"), 1.0)
    F["low_information"] = S["low_information"] < 0.3
    blur = 1 - np.exp(-1 * col("blurriness") * 0.01)
    std = 1 - np.exp(-1 * col("blurriness_grayscale_std") * 0.01)
    std[std <= 0.18] = 0
    S["blurry"] = np.minimum(blur + std, 1)
    F["blurry"] = S["blurry"] < 0.29
    S["grayscale"] = np.array([0.0 if p["color_space"] == "L" else 1.0 for p in props_list])
    F["grayscale"] = S["grayscale"] == 0
    size = col("size")
    q1 = percentile_linear(size, 25)
    q3 = percentile_linear(size, 75)
    iqr = q3 - q1
    mn, mx = q1 - 3.0 * iqr, q3 + 3.0 * iqr
    mid = (mn + mx) / 2
    gap = mx - mn
    if gap > 0:
        norm, thr = gap, 0.5
    else:
        norm, thr = mid, 1.0
    S["odd_size"] = 1 - np.clip(np.abs(size - mid) / norm, 0, 1)
    F["odd_size"] = S["odd_size"] < thr
    return S, F


# ----------------------------------------------------------------------------
# 3. compare
# ----------------------------------------------------------------------------
def main():
    make_images(OUT)
    import cleanvision
    import PIL
    from cleanvision import Imagelab

    lab = Imagelab(data_path=OUT, verbose=False)
    lab.find_issues(n_jobs=1, verbose=False)
    idx = list(lab.issues.index)
    print(f"cleanvision {cleanvision.__version__}  Pillow {PIL.__version__}  numpy {np.__version__}")
    print(f"{len(idx)} images in {OUT}")

    props = [properties(p) for p in idx]
    S, F = scores(props)

    raw_src = {
        "brightness_perc_1": "dark", "brightness_perc_5": "dark", "brightness_perc_10": "dark",
        "brightness_perc_15": "dark", "brightness_perc_90": "dark", "brightness_perc_95": "dark",
        "brightness_perc_99": "dark", "brightness": "dark", "aspect_ratio": "odd_aspect_ratio",
        "size": "odd_size", "entropy": "low_information", "blurriness": "blurry",
        "blurriness_grayscale_std": "blurry",
    }
    worst = 0.0
    print("\nraw property                 max|diff|      (#images)")
    for k, it in raw_src.items():
        cv = lab.info[it][k].loc[idx].to_numpy(dtype=np.float64)
        me = np.array([p[k] for p in props], dtype=np.float64)
        d = np.max(np.abs(cv - me))
        worst = max(worst, d)
        print(f"  {k:28s} {d:.3e}   ({len(idx)})")
    cs_ok = all(lab.info["grayscale"]["color_space"].loc[idx].to_numpy() == np.array([p["color_space"] for p in props]))
    print(f"  {'color_space (string)':28s} {'identical' if cs_ok else 'MISMATCH'}")

    print("\nissue score                  max|diff|   flags identical   #flagged(cv)")
    all_flags = True
    for it in ["dark", "light", "odd_aspect_ratio", "low_information", "blurry", "grayscale", "odd_size"]:
        cv = lab.issues[f"{it}_score"].loc[idx].to_numpy(dtype=np.float64)
        d = np.max(np.abs(cv - S[it]))
        worst = max(worst, d)
        cvf = lab.issues[f"is_{it}_issue"].loc[idx].to_numpy(dtype=bool)
        same = bool(np.all(cvf == F[it]))
        all_flags &= same
        print(f"  {it:28s} {d:.3e}   {str(same):17s} {int(cvf.sum())}")
    for it in ["exact_duplicates", "near_duplicates"]:
        print(f"  {it:28s} (not re-implemented)      {int(lab.issues[f'is_{it}_issue'].sum())}")

    print("\nper-image table (cleanvision scores):")
    cols = ["dark", "light", "odd_aspect_ratio", "low_information", "blurry", "grayscale", "odd_size"]
    print(f"  {'file':34s} {'mode':5s} " + " ".join(f"{c[:8]:>8s}" for c in cols))
    for i, path in enumerate(idx):
        row = " ".join(f"{lab.issues[f'{c}_score'].loc[path]:8.4f}{'*' if lab.issues[f'is_{c}_issue'].loc[path] else ' '}"[:9] for c in cols)
        print(f"  {os.path.basename(path)[:34]:34s} {props[i]['color_space']:5s} {row}")
    print("  (* = flagged)")
    print("\nissue_summary:\n" + lab.issue_summary.to_string())
    ok = worst <= 1e-6 and all_flags and cs_ok
    print(f"\nWORST max|diff| over all raw properties and scores: {worst:.3e}  -> {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


# ----------------------------------------------------------------------------
# 4. sensitivity checks: plausible-but-wrong variants must NOT match
# ----------------------------------------------------------------------------
def mutations(paths, cv_info):
    g = globals()
    orig = {k: g[k] for k in ["to_L", "resize_bicubic", "pil_resize_default", "find_edges", "precompute_coeffs"]}

    def luma709(mode, arr, pal):   # image crate DynamicImage::to_luma8 (Rec.709, truncating)
        if mode in ("RGB", "RGBA"):
            x = arr.astype(np.int64)
            return ((2126 * x[..., 0] + 7152 * x[..., 1] + 722 * x[..., 2]) // 10000).astype(np.uint8)
        return orig["to_L"](mode, arr, pal)

    def luma601round(mode, arr, pal):  # documented ITU-R 601-2 formula, float + round-half-even
        if mode in ("RGB", "RGBA"):
            x = arr.astype(np.float64)
            return np.clip(np.round(0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]), 0, 255).astype(np.uint8)
        return orig["to_L"](mode, arr, pal)

    def luma601int(mode, arr, pal):  # (R*299 + G*587 + B*114 + 500) / 1000
        if mode in ("RGB", "RGBA"):
            x = arr.astype(np.int64)
            return ((299 * x[..., 0] + 587 * x[..., 1] + 114 * x[..., 2] + 500) // 1000).astype(np.uint8)
        return orig["to_L"](mode, arr, pal)

    def resize_hfirst(a, w, h):   # always horizontal pass first
        sq = a.ndim == 2
        a = a[..., None] if sq else a
        if w != a.shape[1]:
            a = resample_h(a, w)
        if h != a.shape[0]:
            a = resample_v(a, h)
        return a[..., 0] if sq else a

    def resize_float(a, w, h):   # same kernel, float weights, single rounding at the end
        sq = a.ndim == 2
        a = (a[..., None] if sq else a).astype(np.float64)
        def coeffs(n_in, n_out):
            K = orig["precompute_coeffs"](n_in, n_out).astype(np.float64) / (1 << PRECISION_BITS)
            return K
        a = np.einsum("hwc,ow->hoc", a, coeffs(a.shape[1], w))
        a = np.einsum("hwc,oh->owc", a, coeffs(a.shape[0], h))
        a = np.clip(np.floor(a + 0.5), 0, 255).astype(np.uint8)
        return a[..., 0] if sq else a

    def no_premul(mode, arr, w, h):
        if mode == "RGBA" and (arr.shape[1] != w or arr.shape[0] != h):
            return orig["resize_bicubic"](arr, w, h)
        return orig["pil_resize_default"](mode, arr, w, h)

    def edges_zero_border(gr):
        e = orig["find_edges"](gr)
        if e.shape[0] >= 3 and e.shape[1] >= 3:
            e[0, :] = 0; e[-1, :] = 0; e[:, 0] = 0; e[:, -1] = 0
        return e

    def edges_replicate(gr):
        x = np.pad(gr.astype(np.int64), 1, mode="edge")
        c = x[1:-1, 1:-1]
        nb = (x[:-2, :-2] + x[:-2, 1:-1] + x[:-2, 2:] + x[1:-1, :-2] + x[1:-1, 2:]
              + x[2:, :-2] + x[2:, 1:-1] + x[2:, 2:])
        return np.clip(8 * c - nb, 0, 255).astype(np.uint8)

    variants = {
        "convert L = Rec.709 (image crate to_luma8)": ("to_L", luma709),
        "convert L = round(0.299R+0.587G+0.114B)": ("to_L", luma601round),
        "convert L = (299R+587G+114B+500)/1000": ("to_L", luma601int),
        "resize: always horizontal pass first": ("resize_bicubic", resize_hfirst),
        "resize: float weights, no 8-bit intermediate": ("resize_bicubic", resize_float),
        "resize RGBA without premultiplied alpha": ("pil_resize_default", no_premul),
        "FIND_EDGES border = 0 instead of copy": ("find_edges", edges_zero_border),
        "FIND_EDGES replicate-padded border": ("find_edges", edges_replicate),
    }
    print("\nsensitivity (wrong variants; column = max|diff| of raw property vs cleanvision):")
    for name, (fn, repl) in variants.items():
        g[fn] = repl
        try:
            props = [properties(p) for p in paths]
        finally:
            g[fn] = orig[fn]
        d1 = max(abs(cv_info["blurry"]["blurriness"].loc[p] - q["blurriness"]) for p, q in zip(paths, props))
        d2 = max(abs(cv_info["blurry"]["blurriness_grayscale_std"].loc[p] - q["blurriness_grayscale_std"]) for p, q in zip(paths, props))
        nimg = sum(1 for p, q in zip(paths, props) if abs(cv_info["blurry"]["blurriness"].loc[p] - q["blurriness"]) > 1e-6
                   or abs(cv_info["blurry"]["blurriness_grayscale_std"].loc[p] - q["blurriness_grayscale_std"]) > 1e-6)
        print(f"  {name:48s} blurriness {d1:9.3e}  gray_std {d2:9.3e}  images off: {nimg}")


def same_size_dataset():
    """odd_size branch threshold_gap == 0 (all sizes equal -> threshold 1.0)."""
    from cleanvision import Imagelab
    d = OUT.rstrip("/") + "_samesize"
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    rng = np.random.default_rng(7)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)).save(f"{d}/s{i}.png")
    Image.fromarray(rng.integers(0, 256, (60, 50, 3), dtype=np.uint8)).save(f"{d}/s5_rotated.png")
    Image.fromarray(rng.integers(0, 256, (51, 60, 3), dtype=np.uint8)).save(f"{d}/s6_off_by_one.png")
    lab = Imagelab(data_path=d, verbose=False)
    lab.find_issues({"odd_size": {}}, n_jobs=1, verbose=False)
    idx = list(lab.issues.index)
    props = [properties(p) for p in idx]
    S, F = scores(props)
    cv = lab.issues["odd_size_score"].loc[idx].to_numpy(dtype=np.float64)
    cvf = lab.issues["is_odd_size_issue"].loc[idx].to_numpy(dtype=bool)
    print(f"\nsame-size data set ({len(idx)} images, IQR=0 branch): odd_size max|diff| = "
          f"{np.max(np.abs(cv - S['odd_size'])):.3e}, flags identical = {bool(np.all(cvf == F['odd_size']))}, "
          f"flagged = {[os.path.basename(p) for p, f in zip(idx, cvf) if f]}")
    return np.max(np.abs(cv - S["odd_size"])) <= 1e-6 and bool(np.all(cvf == F["odd_size"]))


if __name__ == "__main__":
    rc = main()
    if not same_size_dataset():
        rc = 1
    if "--mutations" in sys.argv:
        from cleanvision import Imagelab
        lab = Imagelab(data_path=OUT, verbose=False)
        lab.find_issues({"blurry": {}}, n_jobs=1, verbose=False)
        mutations(list(lab.issues.index), lab.info)
    sys.exit(rc)
