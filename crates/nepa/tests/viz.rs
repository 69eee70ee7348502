//! The visualization math (`nepa::viz`, docs/nepa.md §6) against the model's own outputs and
//! against independent computations: attention rows averaged by hand, cosines computed on
//! the device, the per-position loss map, and synthetic data with known structure.

use burn::tensor::{Device, Distribution, Tensor};
use nepa::image::RgbImage;
use nepa::loss::{l2_normalize, prediction_loss_map};
use nepa::viz::{self, Grid, HeadSel, LayerSel, MapDims, PatchMaps, Pca, pca_rgb_shared};
use nepa::{ForwardOptions, LossOptions, NepaConfig, NepaModel, SplitMix64};

const BATCH: usize = 2;
/// The image of the batch the maps are built for (not 0, so batch slicing is exercised).
const INDEX: usize = 1;

fn read<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

/// A small causal model (16×12 image, 4-px patches: a 4×3 grid, T = 13) and its outputs.
struct Setup {
    dims: MapDims,
    layers: usize,
    /// Whole-batch outputs, flat: z and ẑ `[B·T·D]`, attentions `[B·H·T·T]` per layer.
    z: Vec<f32>,
    z_hat: Vec<f32>,
    attentions: Vec<Vec<f32>>,
    z_tensor: Tensor<3>,
    z_hat_tensor: Tensor<3>,
    maps: PatchMaps,
}

fn setup() -> Setup {
    let device = Device::flex();
    device.seed(11);
    let config = NepaConfig::new(32, 2, 4)
        .with_image_size(16, 12)
        .with_patch_size(4)
        .with_layerscale(0.5);
    let model = NepaModel::new(&config, &device).unwrap();
    let pixels = Tensor::random(
        [BATCH, 3, 16, 12],
        Distribution::Uniform(-1.0, 1.0),
        &device,
    );
    let out = model.forward(pixels, &ForwardOptions::eval().with_attentions());
    let (rows, cols) = config.grid();
    let dims = MapDims {
        grid: Grid::new(rows, cols),
        dim: 32,
        heads: 4,
    };
    assert_eq!((rows, cols), (4, 3));
    let layers = out.attentions.len();
    assert_eq!(layers, 2);
    let z = read(out.input_embedding.clone());
    let z_hat = read(out.last_hidden_state.clone());
    let attentions: Vec<Vec<f32>> = out.attentions.iter().map(|a| read(a.clone())).collect();
    let maps = PatchMaps::from_batch_data(dims, BATCH, INDEX, &z, &z_hat, &attentions).unwrap();
    Setup {
        dims,
        layers,
        z,
        z_hat,
        attentions,
        z_tensor: out.input_embedding,
        z_hat_tensor: out.last_hidden_state,
        maps,
    }
}

/// Attention probability `[b, h, q, k]` of layer `l`, indexed by hand.
fn prob(s: &Setup, l: usize, h: usize, q: usize, k: usize) -> f32 {
    let t = s.dims.grid.tokens();
    s.attentions[l][((INDEX * s.dims.heads + h) * t + q) * t + k]
}

fn assert_all_close(what: &str, actual: &[f32], expected: &[f32], tol: f32) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tol,
            "{what}[{i}]: {a} vs {e} (|Δ| {:e} > {tol:e})",
            (a - e).abs()
        );
    }
}

#[test]
fn grid_token_bookkeeping() {
    let grid = Grid::new(4, 3);
    assert_eq!(grid.patches(), 12);
    assert_eq!(grid.tokens(), 13);
    assert_eq!(grid.token_of(0, 0), 1);
    assert_eq!(grid.token_of(1, 0), 4);
    assert_eq!(grid.token_of(3, 2), 12);
    assert_eq!(grid.patch_of(0), None);
    assert_eq!(grid.patch_of(13), None);
    for row in 0..4 {
        for col in 0..3 {
            assert_eq!(grid.patch_of(grid.token_of(row, col)), Some((row, col)));
        }
    }
    // ẑ[t] predicts token t + 1: CLS predicts patch (0, 0); the end of a row wraps.
    assert_eq!(grid.next_patch(0), Some((0, 0)));
    assert_eq!(grid.next_patch(grid.token_of(0, 2)), Some((1, 0)));
    assert_eq!(grid.next_patch(12), None);
}

#[test]
fn attention_map_matches_hand_average() {
    let s = setup();
    let t_len = s.dims.grid.tokens();
    let selections = [
        (
            LayerSel::All,
            HeadSel::Mean,
            (0..s.layers).collect::<Vec<_>>(),
            (0..4).collect::<Vec<_>>(),
        ),
        (LayerSel::Layer(1), HeadSel::Mean, vec![1], (0..4).collect()),
        (LayerSel::Range(0, 1), HeadSel::Head(2), vec![0], vec![2]),
        (
            LayerSel::All,
            HeadSel::Head(3),
            (0..s.layers).collect(),
            vec![3],
        ),
        // A range past the last layer is clipped (the script's "0..15" on a 12-layer model).
        (
            LayerSel::Range(0, 15),
            HeadSel::Mean,
            (0..s.layers).collect(),
            (0..4).collect(),
        ),
    ];
    for (layer_sel, head_sel, layers, heads) in &selections {
        for q in [0, 1, 5, 7, t_len - 1] {
            let map = s.maps.attention_map(q, *layer_sel, *head_sel).unwrap();
            let n = (layers.len() * heads.len()) as f32;
            let hand = |k: usize| -> f32 {
                let mut sum = 0.0f32;
                for &l in layers {
                    for &h in heads {
                        sum += prob(&s, l, h, q, k);
                    }
                }
                sum / n
            };
            let expected: Vec<f32> = (1..t_len).map(hand).collect();
            let what = format!("{layer_sel:?}/{head_sel:?} q={q}");
            assert_eq!(map.patches.len(), s.dims.grid.patches());
            assert_all_close(&what, &map.patches, &expected, 1e-6);
            assert!((map.cls - hand(0)).abs() <= 1e-6, "{what}: CLS weight");
            // A probability row sums to 1, CLS included.
            let total: f32 = map.cls + map.patches.iter().sum::<f32>();
            assert!((total - 1.0).abs() < 1e-5, "{what}: row sums to {total}");
        }
    }
    // The map really depends on the selection (guards against ignoring the arguments).
    let a = s
        .maps
        .attention_map(7, LayerSel::Layer(0), HeadSel::Head(0))
        .unwrap();
    let b = s
        .maps
        .attention_map(7, LayerSel::Layer(1), HeadSel::Head(1))
        .unwrap();
    assert_ne!(a.patches, b.patches);
}

#[test]
fn causal_attention_is_exactly_zero_after_the_query() {
    let s = setup();
    let grid = s.dims.grid;
    for q in 0..grid.tokens() {
        for (layers, heads) in [
            (LayerSel::All, HeadSel::Mean),
            (LayerSel::Layer(0), HeadSel::Head(1)),
            (LayerSel::Layer(1), HeadSel::Mean),
        ] {
            let map = s.maps.attention_map(q, layers, heads).unwrap();
            assert!(map.cls > 0.0);
            for (p, &w) in map.patches.iter().enumerate() {
                let token = p + 1;
                if token > q {
                    assert_eq!(w, 0.0, "q={q}: future patch {p} has weight {w}");
                } else {
                    assert!(w > 0.0, "q={q}: visible patch {p} has weight {w}");
                }
            }
            // The display normalisation keeps the causal zeros at exactly 0.
            let shown = viz::attention_display(&map.patches);
            for (p, &v) in shown.iter().enumerate() {
                if p + 1 > q {
                    assert_eq!(v, 0.0, "q={q}: future patch {p} shown as {v}");
                }
            }
        }
    }
}

#[test]
fn similarity_map_equals_cosine_computed_on_device() {
    let s = setup();
    // cos(ẑ[t], z[j]) for all t, j via normalised matmul on the device: [B, T, T].
    let zn = l2_normalize(s.z_tensor.clone(), 1e-12);
    let hn = l2_normalize(s.z_hat_tensor.clone(), 1e-12);
    let cos = read(hn.matmul(zn.swap_dims(1, 2)));
    let t_len = s.dims.grid.tokens();
    for q in 0..t_len {
        let map = s.maps.similarity_map(q).unwrap();
        let base = (INDEX * t_len + q) * t_len;
        let expected: Vec<f32> = (1..t_len).map(|j| cos[base + j]).collect();
        assert_all_close(&format!("similarity q={q}"), &map, &expected, 1e-5);
        // Future patches are included: the map is not causal.
        if q + 1 < t_len {
            assert!(map[q..].iter().any(|&v| v != 0.0));
        }
        // Retrieval agrees with the map's order.
        let nearest = s.maps.nearest_patches(q, 3).unwrap();
        assert_eq!(nearest.len(), 3);
        assert!(map[nearest[0]] >= map[nearest[1]] && map[nearest[1]] >= map[nearest[2]]);
        assert!(map.iter().all(|&v| v <= map[nearest[0]]));
    }
}

#[test]
fn similarity_softmax_is_a_distribution() {
    let s = setup();
    let raw = s.maps.similarity_map(4).unwrap();
    let probs = viz::similarity_softmax(&raw);
    let total: f32 = probs.iter().sum();
    assert!((total - 1.0).abs() < 1e-6, "softmax sums to {total}");
    // Temperature 1: p_i / p_j = exp(raw_i − raw_j).
    for i in 0..raw.len() {
        let ratio = probs[i] / probs[0];
        let expected = (raw[i] - raw[0]).exp();
        assert!((ratio - expected).abs() < 1e-5 * expected.max(1.0));
    }
    // Rendering keeps the order and ends in [0, 1] with the max at 1.
    let shown = viz::similarity_display(&raw);
    let best = viz::top_k(&raw, 1)[0];
    assert_eq!(shown[best], 1.0);
    assert!(shown.iter().all(|&v| (0.0..=1.0).contains(&v)));
}

#[test]
fn predictability_map_is_the_negated_loss_map() {
    let s = setup();
    let loss = read(prediction_loss_map(
        s.z_hat_tensor.clone(),
        s.z_tensor.clone(),
        LossOptions::default(),
    ));
    let n = s.dims.grid.patches(); // the loss map is [B, T − 1] = [B, rows·cols]
    assert_eq!(loss.len(), BATCH * n);
    let expected: Vec<f32> = loss[INDEX * n..(INDEX + 1) * n]
        .iter()
        .map(|v| -v)
        .collect();
    let map = s.maps.predictability_map();
    assert_all_close("predictability", &map, &expected, 1e-5);
    // Patch 0's value comes from the CLS position: cos(ẑ[0], z[1]).
    let d = s.dims.dim;
    let t_len = s.dims.grid.tokens();
    let item = |v: &[f32], tok: usize| {
        v[(INDEX * t_len + tok) * d..(INDEX * t_len + tok + 1) * d].to_vec()
    };
    let by_hand = viz::cosine(&item(&s.z_hat, 0), &item(&s.z, 1));
    assert!((map[0] - by_hand).abs() < 1e-6);
}

#[test]
fn maps_reject_bad_shapes_and_selections() {
    let s = setup();
    let t_len = s.dims.grid.tokens();
    let n = t_len * s.dims.dim;
    let z = &s.z[..n];
    let z_hat = &s.z_hat[..n];
    assert!(PatchMaps::from_output_data(s.dims, &z[1..], z_hat, &s.attentions).is_err());
    // Whole-batch attentions are not one image's.
    assert!(PatchMaps::from_output_data(s.dims, z, z_hat, &s.attentions).is_err());
    assert!(
        PatchMaps::from_batch_data(s.dims, BATCH, BATCH, &s.z, &s.z_hat, &s.attentions).is_err()
    );
    let no_attn = PatchMaps::from_output_data::<Vec<f32>>(s.dims, z, z_hat, &[]).unwrap();
    assert_eq!(no_attn.layers(), 0);
    assert!(
        no_attn
            .attention_map(1, LayerSel::All, HeadSel::Mean)
            .is_err()
    );
    assert!(no_attn.similarity_map(1).is_ok());
    assert!(
        s.maps
            .attention_map(t_len, LayerSel::All, HeadSel::Mean)
            .is_err()
    );
    assert!(
        s.maps
            .attention_map(1, LayerSel::Layer(2), HeadSel::Mean)
            .is_err()
    );
    assert!(
        s.maps
            .attention_map(1, LayerSel::Range(1, 1), HeadSel::Mean)
            .is_err()
    );
    assert!(
        s.maps
            .attention_map(1, LayerSel::All, HeadSel::Head(4))
            .is_err()
    );
    assert!(s.maps.similarity_map(t_len).is_err());
    // Batch slicing selects the right image.
    let first =
        PatchMaps::from_batch_data(s.dims, BATCH, 0, &s.z, &s.z_hat, &s.attentions).unwrap();
    assert_eq!(first.z_token(0), &s.z[..s.dims.dim]);
    assert_eq!(s.maps.z_token(0), &s.z[n..n + s.dims.dim]);
}

#[test]
fn normalize_except_zero_keeps_zeros_and_rescales() {
    let values = [0.0, 2.0, 0.0, 5.0, 3.0, -1.0];
    let out = viz::normalize_except_zero(&values, 0.2);
    assert_eq!(out[0], 0.0);
    assert_eq!(out[2], 0.0);
    assert!((out[5] - 0.2).abs() < 1e-7, "min → m");
    assert!((out[3] - 1.0).abs() < 1e-7, "max → 1");
    assert!((out[1] - (0.2 + 0.8 * 3.0 / 6.0)).abs() < 1e-6);
    assert!((out[4] - (0.2 + 0.8 * 4.0 / 6.0)).abs() < 1e-6);
    let out = viz::normalize_except_zero(&values, 0.0);
    assert_eq!(out[5], 0.0);
    assert_eq!(out[3], 1.0);
    // Equal non-zero values have no range: they map to 1; all zeros stay zeros.
    assert_eq!(
        viz::normalize_except_zero(&[0.0, 0.3, 0.3], 0.0),
        vec![0.0, 1.0, 1.0]
    );
    assert_eq!(viz::normalize_except_zero(&[0.0, 0.0], 0.5), vec![0.0, 0.0]);
    // Gamma.
    let g = viz::gamma(&[0.0, 0.0625, 1.0], viz::ATTENTION_GAMMA);
    assert_eq!(g[0], 0.0);
    assert!((g[1] - 0.5).abs() < 1e-6);
    assert_eq!(g[2], 1.0);
    let g = viz::gamma(&[0.5], viz::SIMILARITY_GAMMA);
    assert!((g[0] - 0.5f32.powi(10)).abs() < 1e-9);
    assert_eq!((viz::ATTENTION_GAMMA, viz::SIMILARITY_GAMMA), (0.25, 10.0));
}

#[test]
fn jet_colormap_endpoints_and_middle() {
    let close = |a: [u8; 3], b: [u8; 3]| a.iter().zip(&b).all(|(x, y)| x.abs_diff(*y) <= 2);
    assert!(close(viz::jet(0.0), [0, 0, 128]), "{:?}", viz::jet(0.0));
    assert!(close(viz::jet(1.0), [128, 0, 0]), "{:?}", viz::jet(1.0));
    let mid = viz::jet(0.5);
    assert!(mid[1] == 255 && mid[0] < 160 && mid[2] < 160, "{mid:?}");
    // Matplotlib reference points: pure blue around 0.11–0.34, cyan ≈ 0.35, yellow ≈ 0.65.
    assert!(close(viz::jet(0.2), [0, 77, 255]), "{:?}", viz::jet(0.2));
    assert!(close(viz::jet(0.65), [247, 246, 0]), "{:?}", viz::jet(0.65));
    // Clamped outside [0, 1].
    assert_eq!(viz::jet(-3.0), viz::jet(0.0));
    assert_eq!(viz::jet(7.0), viz::jet(1.0));
    // colorize rescales from [vmin, vmax].
    let c = viz::colorize(&[-1.0, 0.0, 1.0], -1.0, 1.0);
    assert_eq!(c, vec![viz::jet(0.0), viz::jet(0.5), viz::jet(1.0)]);
}

/// `n` points `s_i·scale·u + noise` with a known dominant unit direction `u`.
fn synthetic(n: usize, dim: usize, scale: f64, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = SplitMix64::new(seed);
    let mut u: Vec<f64> = (0..dim).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let norm = u.iter().map(|x| x * x).sum::<f64>().sqrt();
    u.iter_mut().for_each(|x| *x /= norm);
    let mut data = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let s = rng.uniform(-1.0, 1.0) * scale;
        for ui in &u {
            data.push((s * ui + rng.uniform(-0.1, 0.1) + 0.3) as f32);
        }
    }
    (data, u.into_iter().map(|x| x as f32).collect())
}

#[test]
fn pca_recovers_a_dominant_direction() {
    let (n, dim) = (300, 64);
    let (data, u) = synthetic(n, dim, 5.0, 42);
    let pca = Pca::fit(&data, n, dim, 3);
    assert_eq!(pca.components.len(), 3);
    let c0 = &pca.components[0];
    let cos = viz::cosine(c0, &u).abs();
    assert!(cos > 0.99, "|cos(first component, u)| = {cos}");
    // Unit length, mutually orthogonal, decreasing variance.
    for (i, a) in pca.components.iter().enumerate() {
        assert!((a.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
        for b in &pca.components[i + 1..] {
            assert!(a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>().abs() < 1e-4);
        }
    }
    assert!(pca.variances[0] > 10.0 * pca.variances[1]);
    assert!(pca.variances[1] >= pca.variances[2] * 0.9);
    // Deterministic sign: the largest-magnitude loading is positive.
    for c in &pca.components {
        let big = c
            .iter()
            .copied()
            .fold(0.0f32, |m, x| if x.abs() > m.abs() { x } else { m });
        assert!(big > 0.0);
    }
    // Deterministic: refitting gives the same result bit for bit.
    assert_eq!(Pca::fit(&data, n, dim, 3), pca);
    // Projection: the first score recovers s·scale (up to sign) for each point.
    let scores = pca.project(&data);
    assert_eq!(scores.len(), n * 3);
    let mean = &pca.mean;
    let direct: f32 = data[..dim]
        .iter()
        .zip(mean)
        .zip(c0)
        .map(|((x, m), w)| (x - m) * w)
        .sum();
    assert!((scores[0] - direct).abs() < 1e-4);
}

#[test]
fn pca_rgb_uses_one_shared_basis() {
    let (n, dim) = (40, 16);
    let (a, _) = synthetic(n, dim, 3.0, 1);
    let (b, _) = synthetic(n, dim, 3.0, 2);
    // Identical inputs → identical colours, token by token.
    let (ca, cb) = pca_rgb_shared(&a, &a, n, dim);
    assert_eq!(ca.len(), n);
    assert_eq!(ca, cb);
    // Colours span the range (percentile min–max), not a constant.
    for ch in 0..3 {
        let lo = ca.iter().map(|c| c[ch]).min().unwrap();
        let hi = ca.iter().map(|c| c[ch]).max().unwrap();
        assert!(lo <= 5 && hi >= 250, "channel {ch}: {lo}..{hi}");
    }
    // The basis and range are fitted on the union: the other set changes a's colours …
    let (ca_b, cb_a) = pca_rgb_shared(&a, &b, n, dim);
    assert_ne!(ca_b, ca);
    // … and the union does not depend on the order of the two sets.
    let (cb2, ca2) = pca_rgb_shared(&b, &a, n, dim);
    for (x, y) in ca_b.iter().chain(&cb_a).zip(ca2.iter().chain(&cb2)) {
        assert!(
            x.iter().zip(y).all(|(p, q)| p.abs_diff(*q) <= 1),
            "{x:?} vs {y:?}"
        );
    }
}

#[test]
fn pca_rgb_of_model_embeddings() {
    let s = setup();
    let (cz, ch) = s.maps.embedding_pca_rgb();
    assert_eq!(cz.len(), s.dims.grid.patches());
    assert_eq!(ch.len(), s.dims.grid.patches());
    assert_ne!(cz, ch);
}

#[test]
fn overlay_and_outlines() {
    let grid = Grid::new(2, 3);
    let colors = [
        [255, 0, 0],
        [0, 255, 0],
        [0, 0, 255],
        [10, 20, 30],
        [40, 50, 60],
        [60, 80, 100],
    ];
    let up = viz::upsample_nearest(&colors, grid, 4);
    assert_eq!((up.width, up.height), (12, 8));
    assert_eq!(up.pixel(0, 0), [255, 0, 0]);
    assert_eq!(up.pixel(5, 3), [0, 255, 0]);
    assert_eq!(up.pixel(11, 7), [60, 80, 100]);
    assert_eq!(up.to_rgba().len(), 12 * 8 * 4);

    let base = RgbImage::filled(12, 8, [100; 3]);
    let blended = viz::overlay(&base, grid, &colors, viz::OVERLAY_ALPHA);
    // 0.45·100 + 0.55·255 = 185.25 → 185; 0.45·100 = 45.
    assert_eq!(blended.pixel(1, 1), [185, 45, 45]);
    assert_eq!(blended.pixel(10, 6), [78, 89, 100]);

    // A panel for query token 3 = patch (0, 2): red box there, next patch (1, 0) in magenta.
    let values = vec![0.5; grid.patches()];
    let panel = viz::heatmap_panel(&base, grid, &values, Some(grid.token_of(0, 2)));
    assert_eq!(panel.pixel(8, 0), viz::QUERY_COLOR);
    assert_eq!(panel.pixel(11, 3), viz::QUERY_COLOR);
    assert_eq!(panel.pixel(0, 4), viz::NEXT_COLOR);
    assert_eq!(panel.pixel(3, 7), viz::NEXT_COLOR);
    // Elsewhere only the heat colour: patch (0, 0) is not outlined.
    assert_eq!(panel.pixel(0, 0), blended_with(100, viz::jet(0.5)));
}

fn blended_with(base: u8, top: [u8; 3]) -> [u8; 3] {
    top.map(|t| (0.45 * f32::from(base) + 0.55 * f32::from(t)).round() as u8)
}

#[test]
fn denormalize_display_image() {
    // Two pixels, CHW: mean = std = 0.5 maps −1 → 0, 0 → 128 (127.5 rounded), 1 → 255.
    let pixels = [-1.0, 1.0, 0.0, 0.0, 1.0, -1.0];
    let img = viz::denormalize_chw(&pixels, 1, 2, [0.5; 3], [0.5; 3]).unwrap();
    assert_eq!(img.pixel(0, 0), [0, 128, 255]);
    assert_eq!(img.pixel(1, 0), [255, 128, 0]);
    assert!(viz::denormalize_chw(&pixels, 2, 2, [0.5; 3], [0.5; 3]).is_err());
}

#[test]
fn nearest_upscale_and_patch_fill_keep_patches_crisp() {
    let grid = Grid::new(2, 3);
    let colors: Vec<[u8; 3]> = (0..6).map(|i| [i * 40, 255 - i * 40, 7]).collect();
    // At an exact multiple, filling the patch cells is the per-patch nearest upsample.
    assert_eq!(
        viz::fill_patches(grid, 12, 8, &colors),
        viz::upsample_nearest(&colors, grid, 4)
    );
    let small = viz::upsample_nearest(&colors, grid, 1);
    let big = viz::upscale_nearest(&small, 4);
    assert_eq!(big, viz::upsample_nearest(&colors, grid, 4));
    assert_eq!(viz::upscale_nearest(&small, 1), small);
}

#[test]
fn display_scale_is_the_largest_integer_within_the_panel_side() {
    let scale = |h, w| viz::display_scale(&NepaConfig::new(32, 1, 2).with_image_size(h, w));
    assert_eq!(scale(16, 16), 16);
    assert_eq!(scale(64, 64), 4);
    assert_eq!(scale(224, 224), 1);
    assert_eq!(scale(300, 300), 1);
    assert_eq!(scale(32, 100), 2);
}

#[test]
fn render_panels_draws_every_view_at_one_scale() {
    let device = Device::flex();
    device.seed(5);
    let config = NepaConfig::new(32, 2, 4)
        .with_image_size(16, 12)
        .with_patch_size(4)
        .with_layerscale(0.5);
    let model = NepaModel::new(&config, &device).unwrap();
    let mut rng = SplitMix64::new(3);
    let pixels = (0..20 * 30 * 3).map(|_| rng.below(256) as u8).collect();
    let image = RgbImage::new(20, 30, pixels);
    let analysis =
        futures_lite::future::block_on(viz::analyse(&model, &config, &image, &device)).unwrap();
    assert_eq!((analysis.display.width, analysis.display.height), (12, 16));
    let scale = viz::display_scale(&config);
    let selection = viz::Selection::at(1, 2);
    let shown = viz::render_panels(&analysis, &selection, scale).unwrap();
    let grid = analysis.maps.grid();
    assert_eq!(shown.query_token, grid.token_of(1, 2));
    let ids: Vec<&str> = shown.panels.iter().map(|p| p.id).collect();
    assert_eq!(
        ids,
        [
            "query",
            "attention",
            "similarity",
            "predictability",
            "pca-z",
            "pca-z-hat"
        ]
    );
    let base = viz::upscale_nearest(&analysis.display, scale);
    for p in &shown.panels {
        assert_eq!((p.image.width, p.image.height), (base.width, base.height));
    }
    let attention = analysis
        .maps
        .attention_map(shown.query_token, LayerSel::All, HeadSel::Mean)
        .unwrap();
    assert_eq!(shown.panels[1].values, attention.patches);
    assert_eq!(
        shown.panels[1].image,
        viz::heatmap_panel(
            &base,
            grid,
            &viz::attention_display(&attention.patches),
            Some(shown.query_token)
        )
    );
    let mut query = base.clone();
    viz::outline_query(&mut query, grid, shown.query_token);
    assert_eq!(shown.panels[0].image, query);
    assert_eq!(shown.cls_attention, attention.cls);
    // A query outside the grid is an error, not a panic.
    assert!(viz::render_panels(&analysis, &viz::Selection::at(4, 0), scale).is_err());
}
