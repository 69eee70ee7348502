//! The NEPA backbone (docs/nepa.md §2.2): conv patch embedding + CLS, pre-norm blocks with
//! QK-norm, 2D RoPE and LayerScale, and a final LayerNorm. No decoder, no head.

use burn::module::{Module, Param};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Distribution, Tensor};

use crate::config::{Activation, NepaConfig};
use crate::error::NepaError;
use crate::forward_tables::{GridTables, TableCache, attention_scale};
use crate::kernels::{
    attention_inference, attention_softmax, fused_attention, fused_kernels_take, gelu, layer_norm,
    rotate_patches,
};
use crate::precision::Precision;
use crate::rng::SplitMix64;
use crate::rope::RopeTables;

/// LayerNorm over the last dimension, with an optional affine weight and bias.
///
/// Burn's `nn::LayerNorm` always has a weight; the base checkpoint's QK-norm has none.
#[derive(Module, Debug)]
pub struct Norm {
    pub weight: Option<Param<Tensor<1>>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub dim: usize,
    pub eps: f64,
}

impl Norm {
    pub fn new(dim: usize, eps: f64, weight: bool, bias: bool, device: &Device) -> Self {
        Self {
            weight: weight.then(|| Param::from_tensor(Tensor::ones([dim], device))),
            bias: bias.then(|| Param::from_tensor(Tensor::zeros([dim], device))),
            dim,
            eps,
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let weight = match &self.weight {
            Some(w) => w.val(),
            None => Tensor::ones([self.dim], &x.device()),
        };
        layer_norm(x, weight, self.bias.as_ref().map(|b| b.val()), self.eps)
    }

    /// The norm's output times `scale`, folded into its weight so it costs no pass of its
    /// own. Without a weight, `constant` (a cached vector of `scale`s) stands in for it, so
    /// nothing is allocated per call (docs/performance.md §7).
    fn forward_scaled<const D: usize>(
        &self,
        x: Tensor<D>,
        scale: f64,
        constant: &Tensor<1>,
    ) -> Tensor<D> {
        let weight = match &self.weight {
            Some(w) if scale == 1.0 => w.val(),
            Some(w) => w.val() * scale,
            None => constant.clone(),
        };
        let bias = self.bias.as_ref().map(|b| match scale {
            1.0 => b.val(),
            _ => b.val() * scale,
        });
        layer_norm(x, weight, bias, self.eps)
    }
}

/// A linear layer storing its weight as `[in, out]` (Burn's layout; checkpoints hold
/// PyTorch's `[out, in]` and are transposed on import and export).
#[derive(Module, Debug)]
pub struct Dense {
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
}

impl Dense {
    /// Weight ~ N(0, std²) (the official trunc_normal with ±2 absolute bounds is, at
    /// std 0.02, the plain normal), bias 0.
    pub fn new(d_in: usize, d_out: usize, bias: bool, std: f64, device: &Device) -> Self {
        let weight = if std == 0.0 {
            Tensor::zeros([d_in, d_out], device)
        } else {
            Tensor::random([d_in, d_out], Distribution::Normal(0.0, std), device)
        };
        Self {
            weight: Param::from_tensor(weight),
            bias: bias.then(|| Param::from_tensor(Tensor::zeros([d_out], device))),
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.forward_in(x, Precision::F32)
    }

    /// The product in `precision` (docs/performance.md §3); the result is f32.
    pub fn forward_in<const D: usize>(&self, x: Tensor<D>, precision: Precision) -> Tensor<D> {
        precision.linear(x, self.weight.val(), self.bias.as_ref().map(|b| b.val()))
    }
}

/// Conv2d patch embedding (kernel = stride = patch) plus the learnable CLS token.
///
/// The convolution is computed as "patchify + matmul", which is the same operation for
/// non-overlapping patches, with the weight kept in the conv layout `[D, C, p, p]`.
#[derive(Module, Debug)]
pub struct NepaEmbeddings {
    pub cls_token: Param<Tensor<3>>,
    pub projection_weight: Param<Tensor<4>>,
    pub projection_bias: Param<Tensor<1>>,
    pub patch_size: usize,
}

impl NepaEmbeddings {
    fn new(config: &NepaConfig, device: &Device) -> Self {
        let d = config.hidden_size;
        let p = config.patch_size;
        let std = config.initializer_range;
        Self {
            cls_token: Param::from_tensor(Tensor::random(
                [1, 1, d],
                Distribution::Normal(0.0, std),
                device,
            )),
            projection_weight: Param::from_tensor(Tensor::random(
                [d, config.num_channels, p, p],
                Distribution::Normal(0.0, std),
                device,
            )),
            projection_bias: Param::from_tensor(Tensor::zeros([d], device)),
            patch_size: p,
        }
    }

    /// `[B, C, H, W]` → patch embeddings `[B, rows·cols, D]`, row-major.
    pub fn patches(&self, pixels: Tensor<4>, precision: Precision) -> Tensor<3> {
        let [b, c, h, w] = pixels.dims();
        let p = self.patch_size;
        let (rows, cols) = (h / p, w / p);
        let [d, _, _, _] = self.projection_weight.dims();
        let patches = pixels
            .reshape([b, c, rows, p, cols, p])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([b * rows * cols, c * p * p]);
        let kernel = self
            .projection_weight
            .val()
            .reshape([d, c * p * p])
            .transpose();
        precision
            .linear(patches, kernel, Some(self.projection_bias.val()))
            .reshape([b, rows * cols, d])
    }

    /// z = [CLS ; patches]: `[B, 1 + rows·cols, D]`. This is also the loss target.
    pub fn forward(&self, pixels: Tensor<4>, precision: Precision) -> Tensor<3> {
        let [b, _, _, _] = pixels.dims();
        let patches = self.patches(pixels, precision);
        let [_, _, d] = patches.dims();
        let cls = self.cls_token.val().expand([b, 1, d]);
        Tensor::cat(vec![cls, patches], 1)
    }
}

/// What every block's attention takes besides its input; the same for all blocks of one
/// forward pass.
#[derive(Clone, Copy)]
pub struct GridContext<'a> {
    /// The grid's cached constants (docs/performance.md §7).
    pub tables: &'a GridTables,
    /// RoPE at this pass's coordinate scale.
    pub rope: &'a RopeTables,
    /// Causal (pretraining) or bidirectional (fine-tuning) attention.
    pub causal: bool,
}

/// Whether attention takes one attention call (`kernels::attention_inference`: the backend's
/// fused op, or nepa's softmax between two products on Flex) rather than softmax(QKᵀ)·V written
/// out step by step: inference (no autodiff) in f32 without the attention maps. Under autodiff Burn
/// decomposes the op anyway, and the low-precision path keeps its softmax in f32
/// (docs/performance.md §3). The bench report's label is derived from it.
pub fn takes_fused_attention(precision: Precision, autodiff: bool, keep_probs: bool) -> bool {
    !keep_probs && !autodiff && precision == Precision::F32
}

/// Multi-head self-attention with QK-LayerNorm and 2D RoPE on patch tokens.
#[derive(Module, Debug)]
pub struct NepaAttention {
    pub query: Dense,
    pub key: Dense,
    pub value: Dense,
    pub q_norm: Option<Norm>,
    pub k_norm: Option<Norm>,
    pub output: Dense,
    pub num_heads: usize,
}

impl NepaAttention {
    fn new(config: &NepaConfig, device: &Device) -> Self {
        let d = config.hidden_size;
        let std = config.initializer_range;
        let hd = config.head_dim();
        let qk_norm = || {
            config.qk_norm.then(|| {
                Norm::new(
                    hd,
                    config.layer_norm_eps,
                    config.qk_norm_affine,
                    false,
                    device,
                )
            })
        };
        Self {
            query: Dense::new(d, d, config.qkv_bias, std, device),
            key: Dense::new(d, d, config.qkv_bias, std, device),
            value: Dense::new(d, d, config.qkv_bias, std, device),
            q_norm: qk_norm(),
            k_norm: qk_norm(),
            output: Dense::new(d, d, true, std, device),
            num_heads: config.num_attention_heads,
        }
    }

    fn heads(&self, x: Tensor<3>) -> Tensor<4> {
        let [b, t, d] = x.dims();
        x.reshape([b, t, self.num_heads, d / self.num_heads])
            .swap_dims(1, 2)
    }

    /// Q, K and V split into heads, `[B, H, T, head_dim]` each, from one matrix product with
    /// the three weights side by side
    /// (docs/performance.md §7): the input is read once and the backward pass computes one
    /// input gradient instead of three. The parameters stay three tensors under their
    /// official names, so checkpoints, optimizer state and LoRA adapters see no difference.
    ///
    /// The split is views only: `[B, T, 3·H, head_dim]` with heads before tokens, narrowed per
    /// projection. Narrowing the last dimension first and then splitting it into heads made
    /// Flex copy each projection (a reshape of a strided tensor; its cost is measured in
    /// docs/results/cpu-vs-pytorch.md).
    fn project_qkv(&self, x: Tensor<3>, precision: Precision) -> [Tensor<4>; 3] {
        let dense = [&self.query, &self.key, &self.value];
        let biases: Option<Vec<Tensor<1>>> = dense
            .iter()
            .map(|l| l.bias.as_ref().map(|b| b.val()))
            .collect();
        let some_bias = dense.iter().any(|l| l.bias.is_some());
        if biases.is_none() && some_bias {
            // Only some projections have a bias (no checkpoint of this model does): one
            // product each, as the layers are.
            return dense.map(|l| self.heads(l.forward_in(x.clone(), precision)));
        }
        let [b, t, d] = x.dims();
        let h = self.num_heads;
        let weight = Tensor::cat(dense.iter().map(|l| l.weight.val()).collect(), 1);
        let qkv = precision
            .linear(x, weight, biases.map(|b| Tensor::cat(b, 0)))
            .reshape([b, t, 3 * h, d / h])
            .swap_dims(1, 2);
        [0, 1, 2].map(|i| qkv.clone().narrow(1, i * h, h))
    }

    /// Returns the attention output `[B, T, D]` and, with `keep_probs`, the probabilities
    /// `[B, H, T, T]`.
    pub fn forward(
        &self,
        x: Tensor<3>,
        grid: &GridContext<'_>,
        precision: Precision,
        keep_probs: bool,
    ) -> (Tensor<3>, Option<Tensor<4>>) {
        let GridContext {
            tables,
            rope,
            causal,
        } = *grid;
        let [b, t, d] = x.dims();
        let [mut q, mut k, v] = self.project_qkv(x, precision);
        // 1/√head_dim is folded into the q-norm's weight (RoPE is linear, so it commutes),
        // which saves a pass over the [B, H, T, T] logits; without QK-norm q takes it.
        let scale = attention_scale(d / self.num_heads);
        q = match &self.q_norm {
            Some(norm) => norm.forward_scaled(q, scale, &tables.q_scale),
            None => q * scale,
        };
        if let Some(norm) = &self.k_norm {
            k = norm.forward_scaled(k, 1.0, &tables.ones);
        }
        let q = rotate_patches(q, rope);
        let k = rotate_patches(k, rope);
        // Inference in f32: one attention call. On Flex nepa's softmax between two products;
        // elsewhere Burn's `attention` op, which with nepa's explicit scale takes Burn's
        // decomposed path (docs/performance.md §8). When it applies: `takes_fused_attention`.
        let causal_mask = causal.then_some(&tables.causal_mask);
        // On the cubecl backends, nepa's fused kernels, training included: the probabilities
        // are never materialised (docs/attention.md §Fused attention). Under mixed precision
        // q, k, v and the output are in the products' type (f16, bf16).
        let (q, k, v) = if !keep_probs && fused_kernels_take(&q) {
            let [q, k, v] = [q, k, v].map(|x| precision.down(x));
            match fused_attention(q, k, v, causal) {
                Ok(context) => {
                    let context = precision.up(context).swap_dims(1, 2).reshape([b, t, d]);
                    return (self.output.forward_in(context, precision), None);
                }
                // Not reached: the kernels take every float type `fused_kernels_take` saw.
                Err(inputs) => {
                    let [q, k, v] = inputs.map(|x| precision.up(x));
                    (q, k, v)
                }
            }
        } else {
            (q, k, v)
        };
        if takes_fused_attention(precision, q.is_autodiff(), keep_probs) {
            let context = attention_inference(q, k, v, causal_mask)
                .swap_dims(1, 2)
                .reshape([b, t, d]);
            return (self.output.forward_in(context, precision), None);
        }
        let scores = precision.matmul(q, k.swap_dims(2, 3));
        let probs = attention_softmax(scores, causal_mask);
        let context = precision
            .matmul(probs.clone(), v)
            .swap_dims(1, 2)
            .reshape([b, t, d]);
        (
            self.output.forward_in(context, precision),
            keep_probs.then_some(probs),
        )
    }
}

/// The MLP: `down(act(up(x)))`, or gated `down(act(gate(x)) · up(x))`.
#[derive(Module, Debug)]
pub struct NepaMlp {
    pub up_proj: Dense,
    pub gate_proj: Option<Dense>,
    pub down_proj: Dense,
    pub silu: bool,
}

impl NepaMlp {
    fn new(config: &NepaConfig, device: &Device) -> Self {
        let (d, i, std) = (
            config.hidden_size,
            config.intermediate_size,
            config.initializer_range,
        );
        Self {
            up_proj: Dense::new(d, i, true, std, device),
            gate_proj: config
                .use_gated_mlp
                .then(|| Dense::new(d, i, true, std, device)),
            down_proj: Dense::new(i, d, true, std, device),
            silu: config.hidden_act == Activation::Silu,
        }
    }

    fn act(&self, x: Tensor<3>) -> Tensor<3> {
        if self.silu { silu(x) } else { gelu(x) }
    }

    pub fn forward(&self, x: Tensor<3>, precision: Precision) -> Tensor<3> {
        let hidden = match &self.gate_proj {
            Some(gate) => {
                self.act(gate.forward_in(x.clone(), precision))
                    * self.up_proj.forward_in(x, precision)
            }
            None => self.act(self.up_proj.forward_in(x, precision)),
        };
        self.down_proj.forward_in(hidden, precision)
    }
}

/// One pre-norm transformer block with LayerScale and stochastic depth on both branches.
#[derive(Module, Debug)]
pub struct NepaLayer {
    pub layernorm_before: Norm,
    pub attention: NepaAttention,
    pub layer_scale_attn: Option<Param<Tensor<1>>>,
    pub layernorm_after: Norm,
    pub mlp: NepaMlp,
    pub layer_scale_mlp: Option<Param<Tensor<1>>>,
    pub drop_path_rate: f64,
}

impl NepaLayer {
    fn new(config: &NepaConfig, index: usize, device: &Device) -> Self {
        let d = config.hidden_size;
        let eps = config.layer_norm_eps;
        let scale = || {
            (config.layerscale_value > 0.0)
                .then(|| Param::from_tensor(Tensor::full([d], config.layerscale_value, device)))
        };
        Self {
            layernorm_before: Norm::new(d, eps, true, true, device),
            attention: NepaAttention::new(config, device),
            layer_scale_attn: scale(),
            layernorm_after: Norm::new(d, eps, true, true, device),
            mlp: NepaMlp::new(config, device),
            layer_scale_mlp: scale(),
            drop_path_rate: config.drop_path_rate(index),
        }
    }

    fn branch(&self, x: Tensor<3>, scale: &Option<Param<Tensor<1>>>, drop_path: bool) -> Tensor<3> {
        let [b, _, d] = x.dims();
        let x = match scale {
            Some(lambda) => x * lambda.val().reshape([1, 1, d]),
            None => x,
        };
        if drop_path && self.drop_path_rate > 0.0 {
            // Per-sample Bernoulli keep mask, rescaled so the expectation is unchanged.
            let keep = 1.0 - self.drop_path_rate;
            let mask = Tensor::<3>::random([b, 1, 1], Distribution::Bernoulli(keep), &x.device());
            x * (mask / keep)
        } else {
            x
        }
    }

    pub fn forward(
        &self,
        h: Tensor<3>,
        grid: &GridContext<'_>,
        drop_path: bool,
        precision: Precision,
        keep_probs: bool,
    ) -> (Tensor<3>, Option<Tensor<4>>) {
        let (attn, probs) = self.attention.forward(
            self.layernorm_before.forward(h.clone()),
            grid,
            precision,
            keep_probs,
        );
        let h = h + self.branch(attn, &self.layer_scale_attn, drop_path);
        let mlp = self
            .mlp
            .forward(self.layernorm_after.forward(h.clone()), precision);
        let h = h.clone() + self.branch(mlp, &self.layer_scale_mlp, drop_path);
        (h, probs)
    }
}

/// Per-call forward settings. `Default` is evaluation: deterministic RoPE, no drop-path,
/// no attention probabilities kept.
#[derive(Clone, Debug)]
pub struct ForwardOptions {
    /// Keep every layer's attention probabilities (the UI's attention maps).
    pub return_attentions: bool,
    /// Multiplier on the RoPE coordinates (the training-time rescale draw; 1 in eval).
    pub rope_scale: f64,
    /// Apply stochastic depth (training only).
    pub drop_path: bool,
}

impl Default for ForwardOptions {
    fn default() -> Self {
        Self {
            return_attentions: false,
            rope_scale: 1.0,
            drop_path: false,
        }
    }
}

impl ForwardOptions {
    /// Evaluation mode.
    pub fn eval() -> Self {
        Self::default()
    }

    /// Training mode: draws the RoPE rescale `exp(U(−ln s, ln s))` (one scalar per
    /// forward, docs/nepa.md §2.3) from `rng` and enables drop-path.
    pub fn train(config: &NepaConfig, rng: &mut SplitMix64) -> Self {
        let rope_scale = match config.pos_embed_rescale {
            Some(s) if s > 1.0 => {
                let ln = s.ln();
                (rng.uniform(-ln, ln)).exp()
            }
            _ => 1.0,
        };
        Self {
            return_attentions: false,
            rope_scale,
            drop_path: true,
        }
    }

    pub fn with_attentions(mut self) -> Self {
        self.return_attentions = true;
        self
    }
}

/// Everything the forward pass produces.
#[derive(Clone, Debug)]
pub struct NepaOutput {
    /// z = [CLS ; conv patch embeddings], `[B, T, D]`: the prediction targets.
    pub input_embedding: Tensor<3>,
    /// Each layer's output before the final LayerNorm, `[B, T, D]`.
    pub hidden_states: Vec<Tensor<3>>,
    /// ẑ = final LayerNorm of the last layer's output, `[B, T, D]`.
    pub last_hidden_state: Tensor<3>,
    /// Per-layer attention probabilities `[B, H, T, T]` (empty unless requested).
    pub attentions: Vec<Tensor<4>>,
}

/// The NEPA vision transformer backbone (`ViTNepaModel`).
#[derive(Module, Debug)]
pub struct NepaModel {
    pub embeddings: NepaEmbeddings,
    pub layers: Vec<NepaLayer>,
    pub layernorm: Norm,
    pub is_causal: bool,
    pub rope_theta: f64,
    pub num_channels: usize,
    /// The type of the matrix products (docs/performance.md §3); weights stay f32. Not
    /// saved: a checkpoint is the same whatever precision trained it.
    #[module(skip)]
    pub precision: Precision,
    /// RoPE tables, causal mask and QK-norm constants per grid and device, built on first
    /// use (docs/performance.md §7). Clones share it.
    #[module(skip)]
    pub tables: TableCache,
}

impl NepaModel {
    /// A randomly initialised model (docs/nepa.md §2.2 weight init) on `device`.
    pub fn new(config: &NepaConfig, device: &Device) -> Result<Self, NepaError> {
        config.validate()?;
        Ok(Self {
            embeddings: NepaEmbeddings::new(config, device),
            layers: (0..config.num_hidden_layers)
                .map(|i| NepaLayer::new(config, i, device))
                .collect(),
            layernorm: Norm::new(
                config.hidden_size,
                config.layer_norm_eps,
                true,
                true,
                device,
            ),
            is_causal: config.is_causal,
            rope_theta: config.rope_theta,
            num_channels: config.num_channels,
            precision: Precision::F32,
            tables: TableCache::default(),
        })
    }

    /// Runs the matrix products in `precision` from now on (the weights stay f32).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    pub fn patch_size(&self) -> usize {
        self.embeddings.patch_size
    }

    pub fn hidden_size(&self) -> usize {
        self.layernorm.dim
    }

    pub fn num_heads(&self) -> usize {
        self.layers.first().map_or(1, |l| l.attention.num_heads)
    }

    /// Switches between causal (pretraining) and bidirectional (fine-tuning) attention.
    pub fn set_causal(mut self, is_causal: bool) -> Self {
        self.is_causal = is_causal;
        self
    }

    /// Sets stochastic depth to rise linearly from 0 (first block) to `max_rate` (last), as
    /// [`NepaConfig::drop_path_rate`] does for a new model. A checkpoint does not carry the
    /// rate, so fine-tuning from one sets it here (docs/nepa.md §5: 0.1 for ViT-B).
    pub fn with_drop_path(mut self, max_rate: f64) -> Self {
        let last = self.layers.len().saturating_sub(1).max(1) as f64;
        let single = self.layers.len() <= 1;
        for (i, layer) in self.layers.iter_mut().enumerate() {
            layer.drop_path_rate = if single {
                0.0
            } else {
                max_rate * i as f64 / last
            };
        }
        self
    }

    /// Gives every QK-LayerNorm a learnable weight initialised to 1 (the forward pass is
    /// unchanged until it trains): the official base fine-tuning turns QK-norm affine
    /// (docs/nepa.md §5). Norms that already have a weight keep it.
    pub fn with_affine_qk_norm(mut self) -> Self {
        for layer in &mut self.layers {
            let device = layer.attention.query.weight.val().device();
            let attention = &mut layer.attention;
            for norm in [&mut attention.q_norm, &mut attention.k_norm]
                .into_iter()
                .flatten()
            {
                if norm.weight.is_none() {
                    norm.weight = Some(Param::from_tensor(Tensor::ones([norm.dim], &device)));
                }
            }
        }
        self
    }

    /// Whether the QK-LayerNorms have learnable weights.
    pub fn qk_norm_is_affine(&self) -> bool {
        self.layers.first().is_some_and(|l| {
            l.attention
                .q_norm
                .as_ref()
                .is_some_and(|n| n.weight.is_some())
        })
    }

    /// Checks an input shape `[B, C, H, W]` against the model, with a clear message.
    pub fn check_input(&self, dims: [usize; 4]) -> Result<(), NepaError> {
        let [b, c, h, w] = dims;
        let p = self.patch_size();
        if b == 0 {
            return Err(NepaError::Input("empty batch".into()));
        }
        if c != self.num_channels {
            return Err(NepaError::Input(format!(
                "expected {} channels, got {c}",
                self.num_channels
            )));
        }
        if h == 0 || w == 0 || !h.is_multiple_of(p) || !w.is_multiple_of(p) {
            return Err(NepaError::Input(format!(
                "image {h}×{w} is not a positive multiple of the patch size {p}"
            )));
        }
        Ok(())
    }

    /// The forward pass on normalised pixels `[B, C, H, W]`.
    ///
    /// # Panics
    /// If the input does not fit the model (see [`NepaModel::check_input`]).
    pub fn forward(&self, pixels: Tensor<4>, options: &ForwardOptions) -> NepaOutput {
        let dims = pixels.dims();
        if let Err(e) = self.check_input(dims) {
            panic!("{e}");
        }
        let device = pixels.device();
        let p = self.patch_size();
        let (rows, cols) = (dims[2] / p, dims[3] / p);
        let head_dim = self.hidden_size() / self.num_heads();
        let tables = self
            .tables
            .get(rows, cols, head_dim, self.rope_theta, &device);
        let rope = tables.rope(options.rope_scale);
        let grid = GridContext {
            tables: &tables,
            rope: &rope,
            causal: self.is_causal,
        };

        let z = self.embeddings.forward(pixels, self.precision);
        let mut h = z.clone();
        let mut hidden_states = Vec::with_capacity(self.layers.len());
        let mut attentions = Vec::new();
        for layer in &self.layers {
            let (out, probs) = layer.forward(
                h,
                &grid,
                options.drop_path,
                self.precision,
                options.return_attentions,
            );
            attentions.extend(probs);
            hidden_states.push(out.clone());
            h = out;
        }
        NepaOutput {
            input_embedding: z,
            last_hidden_state: self.layernorm.forward(h),
            hidden_states,
            attentions,
        }
    }
}
