//! The forward kernel of fused attention (docs/attention.md §Fused attention): one cube per
//! tile of `b` query rows of one (batch, head), `b × b` units. Unit (x, y) scores query row y
//! against key x of the current key tile, then accumulates output columns x, x + b, ... of
//! row y. The key/value tiles above the diagonal are never visited under the causal rule;
//! the diagonal tile and the ragged last tile are masked element by element.

use cubecl::prelude::*;

/// Loads rows `row0..row0 + b` of a `[seq, d]` matrix at `base` into `tile` (`b × d`, f32
/// whatever the input's float type; zeros past the sequence's end); every unit of the cube
/// takes part.
#[cube]
pub fn load_tile<F: Float>(
    src: &[F],
    tile: &mut Shared<[f32]>,
    base: usize,
    row0: usize,
    seq: usize,
    #[comptime] b: usize,
    #[comptime] d: usize,
) {
    let tid = UNIT_POS as usize;
    #[unroll]
    for r in 0..comptime!(d.div_ceil(b)) {
        let e = r * b * b + tid;
        if e < b * d {
            let row = row0 + e / d;
            let mut value = 0.0f32;
            if row < seq {
                value = f32::cast_from(src[base + row * d + e % d]);
            }
            tile[e] = value;
        }
    }
}

/// Loads `b` per-row values (`lse`, row sums) of rows `row0..` into `tile`.
#[cube]
pub fn load_rows(src: &[f32], tile: &mut Shared<[f32]>, base: usize, row0: usize, seq: usize) {
    let tid = UNIT_POS as usize;
    if UNIT_POS_Y == 0 {
        let row = row0 + tid;
        let mut value = 0.0f32;
        if row < seq {
            value = src[base + row];
        }
        tile[tid] = value;
    }
}

/// Row `ra` of tile `a` dotted with row `rb` of tile `b_tile` (both `· × d`, shared).
#[cube]
pub fn dot_rows(
    a: &Shared<[f32]>,
    ra: usize,
    b_tile: &Shared<[f32]>,
    rb: usize,
    #[comptime] d: usize,
) -> f32 {
    let mut s = 0.0f32;
    #[unroll]
    for c in 0..d {
        s += a[ra * d + c] * b_tile[rb * d + c];
    }
    s
}

/// Whether key `key` is visible from query `query`.
#[cube]
pub fn visible(query: usize, key: usize, seq: usize, #[comptime] causal: bool) -> bool {
    let mut ok = query < seq && key < seq;
    if causal {
        ok = ok && key <= query;
    }
    ok
}

/// ⌈seq / b⌉: the kernel language has no `div_ceil` on runtime values.
#[cube]
#[allow(clippy::manual_div_ceil)]
pub fn tile_count(seq: usize, #[comptime] b: usize) -> usize {
    (seq + b - 1) / b
}

/// The number of key tiles a query tile visits: up to its diagonal when causal.
#[cube]
pub fn key_tiles(tile: usize, tiles: usize, #[comptime] causal: bool) -> usize {
    let mut n = tiles;
    if causal {
        n = tile + 1;
    }
    n
}

/// `F`: the float type of Q, K, V and O (f32, f16, bf16); the tiles, the online softmax and
/// the accumulators are f32, and so is the log-sum-exp.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn flash_forward<F: Float>(
    q: &[F],
    k: &[F],
    v: &[F],
    out: &mut [F],
    lse: &mut [f32],
    seq: usize,
    scale: f32,
    #[comptime] b: usize,
    #[comptime] d: usize,
    #[comptime] causal: bool,
    #[define(F)] _dtype: ElemType,
) {
    let x = UNIT_POS_X as usize;
    let y = UNIT_POS_Y as usize;
    let tile = CUBE_POS_X as usize;
    let bh = CUBE_POS_Y as usize;
    let base = bh * seq * d;
    let row0 = tile * b;
    let query = row0 + y;

    let mut qs = Shared::<[f32]>::new_slice(comptime!(b * d));
    let mut ks = Shared::<[f32]>::new_slice(comptime!(b * d));
    let mut vs = Shared::<[f32]>::new_slice(comptime!(b * d));
    let mut ps = Shared::<[f32]>::new_slice(comptime!(b * b));
    load_tile(q, &mut qs, base, row0, seq, b, d);

    let cols = comptime!(d.div_ceil(b));
    let mut acc = Array::<f32>::new(cols);
    // A score no real one reaches: the running maximum starts there, masked scores are set to it.
    let mut m = f32::new(-1.0e30);
    let mut l = 0.0f32;
    let tiles = key_tiles(tile, tile_count(seq, b), causal);
    for j in 0..tiles {
        sync_cube();
        load_tile(k, &mut ks, base, j * b, seq, b, d);
        load_tile(v, &mut vs, base, j * b, seq, b, d);
        sync_cube();
        let key = j * b + x;
        let ok = visible(query, key, seq, causal);
        let s = scale * dot_rows(&qs, y, &ks, x, d);
        let mut masked = f32::new(-1.0e30);
        if ok {
            masked = s;
        }
        ps[y * b + x] = masked;
        sync_cube();
        let mut mx = m;
        #[unroll]
        for c in 0..b {
            let sc = ps[y * b + c];
            if sc > mx {
                mx = sc;
            }
        }
        sync_cube();
        let mut p = 0.0f32;
        if ok {
            p = (s - mx).exp();
        }
        ps[y * b + x] = p;
        sync_cube();
        let alpha = (m - mx).exp();
        let mut rowsum = 0.0f32;
        #[unroll]
        for c in 0..b {
            rowsum += ps[y * b + c];
        }
        l = l * alpha + rowsum;
        m = mx;
        #[unroll]
        for a in 0..cols {
            let col = a * b + x;
            if col < d {
                let mut sum = 0.0f32;
                #[unroll]
                for c in 0..b {
                    sum += ps[y * b + c] * vs[c * d + col];
                }
                acc[a] = acc[a] * alpha + sum;
            }
        }
    }
    if query < seq {
        #[unroll]
        for a in 0..cols {
            let col = a * b + x;
            if col < d {
                out[base + query * d + col] = F::cast_from(acc[a] / l);
            }
        }
        if x == 0 {
            lse[bh * seq + query] = m + l.ln();
        }
    }
}
