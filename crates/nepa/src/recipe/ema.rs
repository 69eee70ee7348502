//! Exponential moving average of the weights (docs/nepa.md §5: "EMA 0.9999"), as timm's
//! `ModelEma`: after each optimiser step `ema ← d·ema + (1 − d)·p` for every parameter.

use std::collections::HashMap;

use burn::module::Param;
use burn::tensor::Tensor;

use crate::checkpoint::{ParamVisitor, Walkable};
use crate::error::NepaError;

/// A detached copy of a model whose weights follow the training model's on average.
///
/// Its tensors carry no autodiff (they are the inner tensors of the training model's), so
/// keeping it costs one copy of the weights and no graph, and it evaluates as a plain model.
#[derive(Clone, Debug)]
pub struct ModelEma<M> {
    model: M,
    /// Weight of the running average per update (timm's default and the recipe: 0.9999).
    pub decay: f64,
}

/// Replaces every parameter by its value without autodiff.
struct Detach;

impl ParamVisitor for Detach {
    fn visit<const D: usize>(
        &mut self,
        _key: String,
        param: Param<Tensor<D>>,
        _transposed: bool,
    ) -> Result<Param<Tensor<D>>, NepaError> {
        let (id, tensor, mapper) = param.consume();
        Ok(Param::from_mapped_value(id, tensor.inner(), mapper))
    }
}

/// Collects the training model's parameters, detached and flattened, by key.
struct Collect(HashMap<String, Tensor<1>>);

impl ParamVisitor for Collect {
    fn visit<const D: usize>(
        &mut self,
        key: String,
        param: Param<Tensor<D>>,
        _transposed: bool,
    ) -> Result<Param<Tensor<D>>, NepaError> {
        let t = param.val().inner();
        let n = t.shape().num_elements();
        self.0.insert(key, t.reshape([n]));
        Ok(param)
    }
}

/// Moves each EMA parameter towards the collected value of the same key.
struct Blend {
    current: HashMap<String, Tensor<1>>,
    decay: f64,
}

impl ParamVisitor for Blend {
    fn visit<const D: usize>(
        &mut self,
        key: String,
        param: Param<Tensor<D>>,
        _transposed: bool,
    ) -> Result<Param<Tensor<D>>, NepaError> {
        let Some(p) = self.current.remove(&key) else {
            return Err(NepaError::Input(format!(
                "EMA: the model has no parameter `{key}` (a different architecture?)"
            )));
        };
        let (id, ema, mapper) = param.consume();
        let dims = ema.dims();
        if p.dims()[0] != dims.iter().product::<usize>() {
            return Err(NepaError::ShapeMismatch {
                key,
                expected: dims.to_vec(),
                found: p.dims().to_vec(),
            });
        }
        let updated = ema * self.decay + p.reshape(dims) * (1.0 - self.decay);
        Ok(Param::from_mapped_value(id, updated, mapper))
    }
}

impl<M: Walkable + Clone> ModelEma<M> {
    /// Starts the average at `model`'s current weights.
    pub fn new(model: &M, decay: f64) -> Result<Self, NepaError> {
        if !(0.0..=1.0).contains(&decay) {
            return Err(NepaError::Config(format!(
                "EMA decay must be in [0, 1], got {decay}"
            )));
        }
        Ok(Self {
            model: model.clone().walk_params(&mut Detach)?,
            decay,
        })
    }

    /// `ema ← decay·ema + (1 − decay)·p` for every parameter of `model` (which may live on
    /// an autodiff device; nothing here is recorded). Errors if the models' parameters
    /// differ; the average is then unchanged.
    pub fn update(&mut self, model: &M) -> Result<(), NepaError> {
        let mut current = Collect(HashMap::new());
        model.clone().walk_params(&mut current)?;
        let mut blend = Blend {
            current: current.0,
            decay: self.decay,
        };
        self.model = self.model.clone().walk_params(&mut blend)?;
        Ok(())
    }

    /// The averaged model.
    pub fn model(&self) -> &M {
        &self.model
    }

    pub fn into_model(self) -> M {
        self.model
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::backbone_tensors;
    use crate::{NepaConfig, NepaModel};
    use burn::tensor::Device;

    fn weights(model: &NepaModel) -> Vec<(String, Vec<f32>)> {
        backbone_tensors(model, false)
            .into_iter()
            .map(|t| {
                (
                    t.key,
                    t.values.into_data().convert::<f32>().try_to_vec().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn one_update_is_the_weighted_mean() {
        let device = Device::flex().autodiff();
        let config = NepaConfig::new(16, 1, 2)
            .with_image_size(8, 8)
            .with_patch_size(4);
        device.seed(1);
        let p0 = NepaModel::new(&config, &device).unwrap();
        device.seed(2);
        let p1 = NepaModel::new(&config, &device).unwrap();
        let mut ema = ModelEma::new(&p0, 0.9).unwrap();
        assert!(!ema.model().embeddings.cls_token.val().is_autodiff());
        ema.update(&p1).unwrap();
        let (w0, w1, we) = (weights(&p0), weights(&p1), weights(ema.model()));
        assert_eq!(w0.len(), we.len());
        let mut differing = 0;
        for ((k0, a), ((_, b), (ke, e))) in w0.iter().zip(w1.iter().zip(&we)) {
            assert_eq!(k0, ke);
            for ((a, b), e) in a.iter().zip(b).zip(e) {
                let want = 0.9 * a + 0.1 * b;
                assert!(
                    (e - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "{k0}: {e} vs {want}"
                );
                differing += usize::from(a != b);
            }
        }
        // The two inits differ, so the check is not vacuous.
        assert!(differing > 100);
    }
}
