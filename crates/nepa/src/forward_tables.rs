//! Constants of the forward pass, built once per (grid, device) and reused by every call
//! (docs/performance.md §7): the RoPE angles and their cos/sin, the causal mask, and the
//! constant weights of the non-affine QK-norms. Building them per call meant host work and an
//! upload on every forward pass, which on a GPU also cuts Burn's fused operation streams.

use std::sync::{Arc, Mutex};

use burn::tensor::{Bool, Device, GradientCheckpointingStrategy, Tensor, TensorData};

use crate::rope::{RopeTables, rope_angles};

/// What the tables depend on besides the device.
#[derive(Clone, Copy, Debug, PartialEq)]
struct GridKey {
    rows: usize,
    cols: usize,
    head_dim: usize,
    theta: f64,
}

/// One grid's tables on one device.
#[derive(Clone, Debug)]
pub struct GridTables {
    /// RoPE angles `[rows·cols, head_dim]` at coordinate scale 1.
    angles: Tensor<2>,
    /// cos/sin of `angles`: the evaluation tables.
    unit_rope: RopeTables,
    /// `[1, 1, T, T]`, true where a query may not see a key (the key comes later).
    pub causal_mask: Tensor<4, Bool>,
    /// `[head_dim]` ones: the weight of a non-affine k-norm.
    pub ones: Tensor<1>,
    /// `[head_dim]` filled with 1/√head_dim: the weight of a non-affine q-norm, which so
    /// carries the attention scale (docs/performance.md §7).
    pub q_scale: Tensor<1>,
}

impl GridTables {
    fn new(key: GridKey, device: &Device) -> Self {
        let GridKey {
            rows,
            cols,
            head_dim,
            theta,
        } = key;
        let values = rope_angles(rows, cols, head_dim, theta, 1.0);
        let shape = [rows * cols, head_dim];
        let unit_rope = RopeTables::from_angles(&values, shape, device);
        let angles = Tensor::<2>::from_data(TensorData::new(values, shape), device);
        let t = 1 + rows * cols;
        let mask: Vec<bool> = (0..t * t).map(|k| k % t > k / t).collect();
        let causal_mask = Tensor::<2, Bool>::from_data(TensorData::new(mask, [t, t]), device)
            .reshape([1, 1, t, t]);
        Self {
            angles,
            unit_rope,
            causal_mask,
            ones: Tensor::ones([head_dim], device),
            q_scale: Tensor::full([head_dim], attention_scale(head_dim), device),
        }
    }

    /// The RoPE tables with coordinates multiplied by `coord_scale` (the training-time
    /// rescale draw): the cached ones at 1, else cos and sin of the scaled cached angles.
    pub fn rope(&self, coord_scale: f64) -> RopeTables {
        if coord_scale == 1.0 {
            return self.unit_rope.clone();
        }
        let angles = self.angles.clone() * coord_scale;
        RopeTables {
            cos: angles.clone().cos(),
            sin: angles.sin(),
        }
    }
}

/// 1/√head_dim, the scale of the attention logits.
pub fn attention_scale(head_dim: usize) -> f64 {
    (head_dim as f64).powf(-0.5)
}

/// The model's cache of [`GridTables`]: a few entries (one per image size and device seen).
/// Clones share it. Tensors are tied to a device and to how it records gradients (autodiff,
/// checkpointing), so those are part of the key.
#[derive(Clone, Debug, Default)]
pub struct TableCache {
    entries: Arc<Mutex<Vec<CacheEntry>>>,
}

#[derive(Debug)]
struct CacheEntry {
    key: GridKey,
    device: Device,
    /// `None` without autodiff.
    autodiff: Option<GradientCheckpointingStrategy>,
    tables: GridTables,
}

/// Enough for every image size a session shows; the oldest entry goes first.
const MAX_ENTRIES: usize = 8;

impl TableCache {
    pub fn get(
        &self,
        rows: usize,
        cols: usize,
        head_dim: usize,
        theta: f64,
        device: &Device,
    ) -> GridTables {
        let key = GridKey {
            rows,
            cols,
            head_dim,
            theta,
        };
        // `Device`'s equality ignores autodiff and checkpointing; the key must not.
        let autodiff = device.gradient_checkpointing_strategy();
        // A poisoned lock only means another thread panicked mid-insert: the entries are
        // whole values, so they are still usable.
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = entries
            .iter()
            .find(|e| e.key == key && e.device == *device && e.autodiff == autodiff)
        {
            return entry.tables.clone();
        }
        let tables = GridTables::new(key, device);
        if entries.len() == MAX_ENTRIES {
            entries.remove(0);
        }
        entries.push(CacheEntry {
            key,
            device: device.clone(),
            autodiff,
            tables: tables.clone(),
        });
        tables
    }
}
