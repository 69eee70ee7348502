//! The top-5 classes of the selected photo under a classifier model (a hub `-sft` model),
//! shown beside the maps. One node whatever it shows (docs/web-architecture.md, "Rendering").

use std::rc::Rc;

use nepa_protocol::{ClassScore, ImageId, ModelInfo, Reply, Request};
use yew::prelude::*;

use crate::engine::EngineClient;
use crate::picture::GalleryImage;

#[derive(Properties, PartialEq)]
pub struct TopClassesProps {
    pub model: Option<Rc<ModelInfo>>,
    pub image: Option<Rc<GalleryImage>>,
}

/// What the panel shows for (model version, image).
#[derive(Clone, PartialEq)]
enum Shown {
    Waiting,
    Classes(Vec<ClassScore>),
    Failed(String),
}

#[function_component(TopClassesPanel)]
pub fn top_classes_panel(props: &TopClassesProps) -> Html {
    let engine = use_context::<Rc<EngineClient>>().expect("the app provides the engine");
    let shown = use_state(|| None::<((u32, ImageId), Shown)>);
    let key = match (&props.model, &props.image) {
        (Some(m), Some(i)) if m.classes > 0 => Some((m.version, i.id)),
        _ => None,
    };
    {
        let shown = shown.clone();
        use_effect_with(key, move |key| {
            if let Some((model_version, image)) = *key {
                shown.set(Some(((model_version, image), Shown::Waiting)));
                engine.send(
                    Request::TopClasses {
                        model_version,
                        image,
                    },
                    None,
                    move |reply, _| match reply {
                        Reply::TopClasses(top) => shown.set(Some((
                            (top.model_version, top.image),
                            Shown::Classes(top.classes),
                        ))),
                        Reply::Failed(e) => {
                            shown.set(Some(((model_version, image), Shown::Failed(e.message))))
                        }
                        _ => {}
                    },
                );
            }
        });
    }
    let current = (*shown)
        .clone()
        .filter(|(k, _)| Some(*k) == key)
        .map(|(_, s)| s);
    let (Some(key), Some(image)) = (key, &props.image) else {
        return html! { <section id="top-classes" hidden=true /> };
    };
    let body = match current {
        Some(Shown::Classes(classes)) => html! {
            <ol data-key={format!("{}-{}", key.0, key.1)}>
                { for classes.iter().map(|c| html! {
                    <li class="top-class">
                        <span class="class-name">{ c.name.clone() }</span>
                        { " " }
                        <span class="class-p">{ format!("{:.1}%", 100.0 * c.probability) }</span>
                    </li>
                }) }
            </ol>
        },
        Some(Shown::Failed(message)) => html! { <p class="error">{ message }</p> },
        _ => html! { <p class="busy">{ format!("classifying {}…", image.name) }</p> },
    };
    html! {
        <section id="top-classes" class="classes">
            <h3>{ format!("Top-5 classes of {}", image.name) }</h3>
            { body }
        </section>
    }
}
