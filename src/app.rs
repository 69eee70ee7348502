//! The root Yew component.

use burn::tensor::{Distribution, Tensor};
use nepa::{ForwardOptions, NepaConfig, NepaModel};
use yew::prelude::*;

use crate::gpu::init_device;

/// What the page shows about the compute device and the model.
#[derive(Clone, PartialEq)]
enum Status {
    Starting,
    Ready {
        backend: &'static str,
        fallback_reason: Option<String>,
        summary: String,
    },
    Failed(String),
}

#[function_component(App)]
pub fn app() -> Html {
    let status = use_state(|| Status::Starting);
    {
        let status = status.clone();
        use_effect_with((), move |_| {
            wasm_bindgen_futures::spawn_local(async move {
                status.set(smoke_run().await);
            });
        });
    }
    html! {
        <main>
            <h1>{ "NEPA — next-embedding prediction" }</h1>
            <p class="badge">{ "untrained: random-init tiny model" }</p>
            { match &*status {
                Status::Starting => html! { <p id="status">{ "Starting the compute device…" }</p> },
                Status::Ready { backend, fallback_reason, summary } => html! {
                    <>
                        <p id="status">{ format!("Ready on {backend}") }</p>
                        if let Some(reason) = fallback_reason {
                            <p class="warning">{ format!("Using the CPU because {reason}.") }</p>
                        }
                        <p id="summary">{ summary }</p>
                    </>
                },
                Status::Failed(e) => html! { <p id="status" class="error">{ format!("Error: {e}") }</p> },
            } }
        </main>
    }
}

/// Initialises the device and runs one forward pass of a tiny random model.
async fn smoke_run() -> Status {
    let compute = init_device().await;
    let config = NepaConfig::new(64, 2, 2)
        .with_image_size(32, 32)
        .with_patch_size(8);
    let model = match NepaModel::new(&config, &compute.device) {
        Ok(m) => m,
        Err(e) => return Status::Failed(e.to_string()),
    };
    let pixels = Tensor::<4>::random(
        [1, 3, 32, 32],
        Distribution::Uniform(-1.0, 1.0),
        &compute.device,
    );
    let out = model.forward(pixels, &ForwardOptions::eval());
    let loss = nepa::prediction_loss(
        out.last_hidden_state,
        out.input_embedding,
        Default::default(),
    );
    match loss.into_scalar_async::<f32>().await {
        Ok(loss) => Status::Ready {
            backend: compute.backend,
            fallback_reason: compute.fallback_reason,
            summary: format!(
                "Forward pass of a random {}-layer model: loss {loss:.4}",
                config.num_hidden_layers
            ),
        },
        Err(e) => Status::Failed(format!("{e:?}")),
    }
}
