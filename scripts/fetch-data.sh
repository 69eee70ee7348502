#!/usr/bin/env bash
# Fetch the real image data the project uses into data/ (gitignored), from package registries
# only: Debian's archive (apt-get download) and PyPI (pip download). No other network access.
#
#   scripts/fetch-data.sh                      # both parts
#   scripts/fetch-data.sh --only fashion-mnist # or: --only photos
#   scripts/fetch-data.sh --force              # re-fetch even if present
#   scripts/fetch-data.sh --dest /some/dir     # default: <repo>/data
#
# Parts (source and licence of each; the photos' licences also land in data/photos/LICENSES.txt):
#   fashion-mnist  Debian `dataset-fashion-mnist` (bookworm 0.0~git20200523.55506a9-1, 30.9 MB .deb):
#                  the 4 canonical idx files, gunzipped, into data/fashion-mnist/ (MIT, Zalando).
#   photos         PyPI `scikit-image==0.26.0` wheel (13.7 MB): the bundled photos into data/photos/,
#                  with their licences in data/photos/LICENSES.txt (CC0 / public domain, except
#                  motorcycle_left: Middlebury research data, local tests only; ihc: no known
#                  copyright restrictions).
#
# Idempotent: a part whose files are all present and verified is skipped. Every file is checked
# (sizes, idx magic numbers and counts, SHA-256). Works as root (CI); as a normal user it needs
# sudo only if `apt-get download` fails and `apt-get update` has to run first.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/data"
ONLY=""
FORCE=0

usage() { sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

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
  ""|fashion-mnist|photos) ;;
  *) echo "fetch-data: --only takes fashion-mnist or photos, not '$ONLY'" >&2; exit 2 ;;
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

fetch_fashion_mnist() {
  local t0 name size magic count sum deb version
  t0="$(now)"
  if [ "$FORCE" = 0 ] && fm_all_ok; then
    log "fashion-mnist: present and verified in $FM_DIR, skipped"
    return
  fi
  command -v apt-get >/dev/null || die "apt-get not found (Fashion-MNIST comes from Debian's $FM_PKG)"
  command -v dpkg-deb >/dev/null || die "dpkg-deb not found"
  mkdir -p "$TMP/deb"
  log "fashion-mnist: apt-get download $FM_PKG"
  if ! apt_download "$FM_PKG"; then
    log "fashion-mnist: download failed; running apt-get update first${SUDO:+ (with sudo)}"
    if [ -n "$SUDO" ] && ! command -v sudo >/dev/null; then
      die "apt-get update needs root and sudo is not installed; run 'apt-get update' as root, then retry"
    fi
    $SUDO apt-get -q update
    apt_download "$FM_PKG"
  fi
  deb="$(ls "$TMP"/deb/"$FM_PKG"_*.deb)"
  version="$(dpkg-deb -f "$deb" Version)"
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

# ----------------------------------------------------------------------------- main

T0="$(now)"
log "destination: $DEST"
if want fashion-mnist; then fetch_fashion_mnist; fi
if want photos; then fetch_photos; fi
log "all done ($(elapsed "$T0"))"
