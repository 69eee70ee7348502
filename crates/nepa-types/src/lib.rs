//! # nepa-types
//!
//! NEPA's plain data, one definition each, shared by the model crate (`nepa`), the native CLI,
//! the browser engine and the page (which links no Burn): the model config
//! ([`config::NepaConfig`], the official `config.json` fields), the model crate's error
//! ([`error::NepaError`]), FLOP counts, the run report `nepa-run-report/1` and the comparison
//! of two reports ([`report`]), and the fine-tuning settings ([`finetune`]: mode, recipes and
//! every knob; `clap::Args` with the `clap` feature).

pub mod config;
pub mod error;
pub mod finetune;
pub mod flops;
pub mod report;
