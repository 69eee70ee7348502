//! Host side of the fused-attention kernels on Burn's cubecl backend: contiguous inputs, the
//! outputs' buffers, the tile size the device's shared memory allows, the launches
//! (docs/attention.md §Fused attention).

use burn::backend::TensorMetadata;
use burn::backend::cubecl::dtype_to_elem_type;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::tensor::{DType, FloatDType, Shape};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::FlashAttentionOps;
use super::backward::{flash_backward_kv, flash_backward_q};
use super::forward::flash_forward;

/// The largest tile (rows per cube, `tile²` units) whose shared memory — `tiles` matrices of
/// `tile × d` values plus `extra(tile)` — fits the device.
fn tile_size(client: &Client, d: usize, tiles: usize, extra: impl Fn(usize) -> usize) -> usize {
    let props = client.properties();
    let bytes = props.hardware.max_shared_memory_size.min(16 * 1024);
    let units = props.hardware.max_units_per_cube as usize;
    [16, 8, 4]
        .into_iter()
        .find(|&b| b * b <= units && 4 * (tiles * b * d + extra(b)) <= bytes)
        .unwrap_or(2)
}

fn empty(like: &CubeTensor, shape: Shape, dtype: DType) -> CubeTensor {
    let handle = like.client.empty(shape.num_elements() * dtype.size());
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        shape,
        handle,
        dtype,
    )
}

/// `[B, H, T, d]` → (B·H, T, d).
fn dims(t: &CubeTensor) -> (usize, usize, usize) {
    let [b, h, t, d] = t.shape().dims::<4>();
    (b * h, t, d)
}

impl FlashAttentionOps for CubeBackend {
    fn flash_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        causal: bool,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (q, k, v) = (into_contiguous(q), into_contiguous(k), into_contiguous(v));
        let (bh, seq, d) = dims(&q);
        let dtype = q.dtype;
        let out = empty(&q, q.shape(), dtype);
        let [b0, h, _, _] = q.shape().dims::<4>();
        let lse = empty(&q, Shape::new([b0, h, seq]), DType::F32);
        let client = q.client.clone();
        let b = tile_size(&client, d, 3, |b| b * b);
        flash_forward::launch(
            &client,
            CubeCount::Static(seq.div_ceil(b) as u32, bh as u32, 1),
            CubeDim::new_2d(b as u32, b as u32),
            q.into_buffer_arg(),
            k.into_buffer_arg(),
            v.into_buffer_arg(),
            out.clone().into_buffer_arg(),
            lse.clone().into_buffer_arg(),
            seq,
            scale,
            b,
            d,
            causal,
            dtype_to_elem_type(dtype),
        );
        (out, lse)
    }

    #[allow(clippy::too_many_arguments)]
    fn flash_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        causal: bool,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (q, k, v) = (into_contiguous(q), into_contiguous(k), into_contiguous(v));
        let (lse, grad) = (into_contiguous(lse), into_contiguous(grad));
        // The row sums of dO·O, [B, H, T, 1]: one value per query row, as the LSE; in f32
        // whatever the inputs' type (a sum of d products).
        let f32 = |t| Self::float_cast(t, FloatDType::F32);
        let delta = Self::float_sum_dim(Self::float_mul(f32(grad.clone()), f32(out)), 3);
        let delta = into_contiguous(delta);
        let (bh, seq, d) = dims(&q);
        let dtype = q.dtype;
        let (dq, dk, dv) = (
            empty(&q, q.shape(), dtype),
            empty(&q, q.shape(), dtype),
            empty(&q, q.shape(), dtype),
        );
        let client = q.client.clone();
        let b = tile_size(&client, d, 4, |b| b * b + 2 * b);
        let count = CubeCount::Static(seq.div_ceil(b) as u32, bh as u32, 1);
        let dim = CubeDim::new_2d(b as u32, b as u32);
        flash_backward_kv::launch(
            &client,
            count.clone(),
            dim,
            q.clone().into_buffer_arg(),
            k.clone().into_buffer_arg(),
            v.clone().into_buffer_arg(),
            grad.clone().into_buffer_arg(),
            lse.clone().into_buffer_arg(),
            delta.clone().into_buffer_arg(),
            dk.clone().into_buffer_arg(),
            dv.clone().into_buffer_arg(),
            seq,
            scale,
            b,
            d,
            causal,
            dtype_to_elem_type(dtype),
        );
        flash_backward_q::launch(
            &client,
            count,
            dim,
            q.into_buffer_arg(),
            k.into_buffer_arg(),
            v.into_buffer_arg(),
            grad.into_buffer_arg(),
            lse.into_buffer_arg(),
            delta.into_buffer_arg(),
            dq.clone().into_buffer_arg(),
            seq,
            scale,
            b,
            d,
            causal,
            dtype_to_elem_type(dtype),
        );
        (dq, dk, dv)
    }
}
