//! The backward kernels of fused attention (docs/attention.md §Backward): the probabilities
//! are recomputed tile by tile from Q, K and the saved log-sum-exp, never stored. `delta` is
//! the row sums of dO·O. Two kernels, so that no unit ever adds into another's output:
//! `flash_backward_kv` (one cube per key tile: dK, dV over the query tiles at or below the
//! diagonal) and `flash_backward_q` (one cube per query tile: dQ over its key tiles).

use cubecl::prelude::*;

use super::forward::{dot_rows, key_tiles, load_rows, load_tile, tile_count, visible};

/// P and dS of element (query row y, key x) of the current tile pair:
/// `p = exp(scale·q·k − lse)`, `ds = p·(dO·v − delta)`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn p_and_ds(
    qs: &Shared<[f32]>,
    ks: &Shared<[f32]>,
    vs: &Shared<[f32]>,
    dos: &Shared<[f32]>,
    rows: &Shared<[f32]>,
    deltas: &Shared<[f32]>,
    ok: bool,
    scale: f32,
    #[comptime] d: usize,
) -> (f32, f32) {
    let x = UNIT_POS_X as usize;
    let y = UNIT_POS_Y as usize;
    let mut p = 0.0f32;
    if ok {
        p = (scale * dot_rows(qs, y, ks, x, d) - rows[y]).exp();
    }
    let dp = dot_rows(dos, y, vs, x, d);
    (p, p * (dp - deltas[y]))
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn flash_backward_kv<F: Float>(
    q: &[F],
    k: &[F],
    v: &[F],
    dout: &[F],
    lse: &[f32],
    delta: &[f32],
    dk: &mut [F],
    dv: &mut [F],
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
    let key0 = tile * b;

    let mut ks = Shared::<[f32]>::new_slice(comptime!(b * d));
    let mut vs = Shared::<[f32]>::new_slice(comptime!(b * d));
    let mut qs = Shared::<[f32]>::new_slice(comptime!(b * d));
    let mut dos = Shared::<[f32]>::new_slice(comptime!(b * d));
    let mut ps = Shared::<[f32]>::new_slice(comptime!(b * b));
    let mut rows = Shared::<[f32]>::new_slice(b);
    let mut deltas = Shared::<[f32]>::new_slice(b);
    load_tile(k, &mut ks, base, key0, seq, b, d);
    load_tile(v, &mut vs, base, key0, seq, b, d);

    let cols = comptime!(d.div_ceil(b));
    let mut dk_acc = Array::<f32>::new(cols);
    let mut dv_acc = Array::<f32>::new(cols);
    let tiles = tile_count(seq, b);
    let mut first = 0usize;
    if causal {
        first = tile;
    }
    for i in first..tiles {
        sync_cube();
        load_tile(q, &mut qs, base, i * b, seq, b, d);
        load_tile(dout, &mut dos, base, i * b, seq, b, d);
        load_rows(lse, &mut rows, bh * seq, i * b, seq);
        load_rows(delta, &mut deltas, bh * seq, i * b, seq);
        sync_cube();
        let ok = visible(i * b + y, key0 + x, seq, causal);
        let (p, ds) = p_and_ds(&qs, &ks, &vs, &dos, &rows, &deltas, ok, scale, d);
        // Unit (x, y) now accumulates key row y: first dV with P, then dK with dS.
        ps[y * b + x] = p;
        sync_cube();
        #[unroll]
        for a in 0..cols {
            let col = a * b + x;
            if col < d {
                let mut sum = 0.0f32;
                #[unroll]
                for r in 0..b {
                    sum += ps[r * b + y] * dos[r * d + col];
                }
                dv_acc[a] += sum;
            }
        }
        sync_cube();
        ps[y * b + x] = ds;
        sync_cube();
        #[unroll]
        for a in 0..cols {
            let col = a * b + x;
            if col < d {
                let mut sum = 0.0f32;
                #[unroll]
                for r in 0..b {
                    sum += ps[r * b + y] * qs[r * d + col];
                }
                dk_acc[a] += sum;
            }
        }
    }
    let key = key0 + y;
    if key < seq {
        #[unroll]
        for a in 0..cols {
            let col = a * b + x;
            if col < d {
                dk[base + key * d + col] = F::cast_from(dk_acc[a] * scale);
                dv[base + key * d + col] = F::cast_from(dv_acc[a]);
            }
        }
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn flash_backward_q<F: Float>(
    q: &[F],
    k: &[F],
    v: &[F],
    dout: &[F],
    lse: &[f32],
    delta: &[f32],
    dq: &mut [F],
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

    let mut qs = Shared::<[f32]>::new_slice(comptime!(b * d));
    let mut dos = Shared::<[f32]>::new_slice(comptime!(b * d));
    let mut ks = Shared::<[f32]>::new_slice(comptime!(b * d));
    let mut vs = Shared::<[f32]>::new_slice(comptime!(b * d));
    let mut ps = Shared::<[f32]>::new_slice(comptime!(b * b));
    let mut rows = Shared::<[f32]>::new_slice(b);
    let mut deltas = Shared::<[f32]>::new_slice(b);
    load_tile(q, &mut qs, base, row0, seq, b, d);
    load_tile(dout, &mut dos, base, row0, seq, b, d);
    load_rows(lse, &mut rows, bh * seq, row0, seq);
    load_rows(delta, &mut deltas, bh * seq, row0, seq);

    let cols = comptime!(d.div_ceil(b));
    let mut dq_acc = Array::<f32>::new(cols);
    let tiles = key_tiles(tile, tile_count(seq, b), causal);
    for j in 0..tiles {
        sync_cube();
        load_tile(k, &mut ks, base, j * b, seq, b, d);
        load_tile(v, &mut vs, base, j * b, seq, b, d);
        sync_cube();
        let ok = visible(row0 + y, j * b + x, seq, causal);
        let (_p, ds) = p_and_ds(&qs, &ks, &vs, &dos, &rows, &deltas, ok, scale, d);
        ps[y * b + x] = ds;
        sync_cube();
        #[unroll]
        for a in 0..cols {
            let col = a * b + x;
            if col < d {
                let mut sum = 0.0f32;
                #[unroll]
                for c in 0..b {
                    sum += ps[y * b + c] * ks[c * d + col];
                }
                dq_acc[a] += sum;
            }
        }
    }
    let query = row0 + y;
    if query < seq {
        #[unroll]
        for a in 0..cols {
            let col = a * b + x;
            if col < d {
                dq[base + query * d + col] = F::cast_from(dq_acc[a] * scale);
            }
        }
    }
}
