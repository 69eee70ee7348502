//! Shared helpers: reading the reference fixtures written by `tests/reference/make_fixtures.py`.
#![allow(dead_code)]

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use nepa::NepaConfig;
use safetensors::SafeTensors;

/// The seven reference configs (see tests/reference/README.md).
pub const FIXTURES: [&str; 7] = [
    "causal_gelu_2x2",
    "causal_gelu_affine_4x3",
    "causal_swiglu_4x3",
    "bidir_gelu_2x2_cls",
    "bidir_swiglu_4x3_cls",
    "causal_gelu_3x3_l3",
    "causal_gelu_noqk_2x2",
];

pub fn fixture_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(file)
}

pub fn read_fixture(file: &str) -> Vec<u8> {
    let path = fixture_path(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// One config's fixture: model bytes, reference inputs and outputs.
pub struct Fixture {
    pub name: String,
    pub config: NepaConfig,
    pub num_labels: usize,
    pub prefixed: bool,
    pub model_bytes: Vec<u8>,
    io_bytes: Vec<u8>,
}

impl Fixture {
    pub fn load(name: &str) -> Self {
        let model_bytes = read_fixture(&format!("{name}.model.safetensors"));
        let io_bytes = read_fixture(&format!("{name}.io.safetensors"));
        let (_, meta) = SafeTensors::read_metadata(&io_bytes).unwrap();
        let meta = meta.metadata().clone().expect("fixture metadata");
        let json = &meta["config"];
        let config = NepaConfig::from_json(json).expect("fixture config");
        let raw: serde_json::Value = serde_json::from_str(json).unwrap();
        Self {
            name: name.to_string(),
            config,
            num_labels: raw["num_labels"].as_u64().unwrap() as usize,
            prefixed: raw["prefix"].as_bool().unwrap(),
            model_bytes,
            io_bytes,
        }
    }

    pub fn io_keys(&self) -> Vec<String> {
        SafeTensors::deserialize(&self.io_bytes)
            .unwrap()
            .names()
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    pub fn has(&self, key: &str) -> bool {
        SafeTensors::deserialize(&self.io_bytes)
            .unwrap()
            .tensor(key)
            .is_ok()
    }

    /// An io tensor as (shape, values).
    pub fn get(&self, key: &str) -> (Vec<usize>, Vec<f32>) {
        let file = SafeTensors::deserialize(&self.io_bytes).unwrap();
        let view = file
            .tensor(key)
            .unwrap_or_else(|_| panic!("{}: fixture has no `{key}`", self.name));
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (view.shape().to_vec(), values)
    }

    pub fn tensor<const D: usize>(&self, key: &str, device: &Device) -> Tensor<D> {
        let (shape, values) = self.get(key);
        Tensor::from_data(TensorData::new(values, shape), device)
    }
}

pub fn values<const D: usize>(t: Tensor<D>) -> (Vec<usize>, Vec<f32>) {
    let shape = t.dims().to_vec();
    (
        shape,
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap(),
    )
}

/// Max |a − b|, asserting equal shapes; NaN counts as infinitely far (`nepa::bench::max_abs_diff`).
pub fn max_abs_diff(
    what: &str,
    actual: (Vec<usize>, Vec<f32>),
    expected: (Vec<usize>, Vec<f32>),
) -> f32 {
    assert_eq!(actual.0, expected.0, "{what}: shape");
    nepa::bench::max_abs_diff(&actual.1, &expected.1) as f32
}

pub fn assert_close(
    what: &str,
    actual: (Vec<usize>, Vec<f32>),
    expected: (Vec<usize>, Vec<f32>),
    tol: f32,
) {
    let diff = max_abs_diff(what, actual, expected);
    assert!(diff <= tol, "{what}: max |Δ| = {diff:e} > {tol:e}");
}
