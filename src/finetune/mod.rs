//! The Fine-tune tab: classes of the user's images (or the bundled Fashion-MNIST sample),
//! training in the engine with live progress, Pause/Stop, classification of new images,
//! download as safetensors, and the last trained model restored from browser storage.

mod actions;
mod callbacks;
mod page;
mod state;
mod view;

pub use page::FinetunePage;
