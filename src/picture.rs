//! Pictures the engine sends (RGBA in a message's payload) and the canvas that shows them.

use std::rc::Rc;

use nepa_protocol::{ImageId, ImageInfo, Pixels};
use wasm_bindgen::JsCast;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, ImageData};
use yew::prelude::*;

/// An RGBA picture held by the page.
#[derive(Debug, PartialEq)]
pub struct Picture {
    pub width: usize,
    pub height: usize,
    pub rgba: Vec<u8>,
}

impl Picture {
    /// The picture `pixels` describes, cut out of a payload; `None` if it is not inside.
    pub fn from_payload(pixels: &Pixels, payload: &[u8]) -> Option<Picture> {
        let end = pixels.offset.checked_add(pixels.len())?;
        Some(Picture {
            width: pixels.width,
            height: pixels.height,
            rgba: payload.get(pixels.offset..end)?.to_vec(),
        })
    }
}

/// An image the engine holds, as the page shows it: its id, name and thumbnail.
#[derive(Debug, PartialEq)]
pub struct GalleryImage {
    pub id: ImageId,
    pub name: String,
    pub thumb: Rc<Picture>,
}

impl GalleryImage {
    /// The gallery entries of decoded images; those whose thumbnail is missing are left out.
    pub fn from_infos(infos: &[ImageInfo], payload: &[u8]) -> Vec<Rc<GalleryImage>> {
        infos
            .iter()
            .filter_map(|info| {
                Some(Rc::new(GalleryImage {
                    id: info.id,
                    name: info.name.clone(),
                    thumb: Rc::new(Picture::from_payload(&info.thumb, payload)?),
                }))
            })
            .collect()
    }
}

#[derive(Properties)]
pub struct CanvasProps {
    pub picture: Rc<Picture>,
    #[prop_or_default]
    pub id: Option<AttrValue>,
    #[prop_or_default]
    pub onclick: Option<Callback<(f64, f64)>>,
    #[prop_or_default]
    pub onhover: Option<Callback<(f64, f64)>>,
}

impl PartialEq for CanvasProps {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.picture, &other.picture) && self.id == other.id
    }
}

/// Fraction (x, y) in [0, 1) of a mouse event over its target element.
fn relative(e: &MouseEvent) -> Option<(f64, f64)> {
    let target: web_sys::Element = e.target()?.dyn_into().ok()?;
    let rect = target.get_bounding_client_rect();
    Some((
        ((e.client_x() as f64 - rect.left()) / rect.width()).clamp(0.0, 0.999),
        ((e.client_y() as f64 - rect.top()) / rect.height()).clamp(0.0, 0.999),
    ))
}

fn draw(canvas: &HtmlCanvasElement, picture: &Picture) {
    canvas.set_width(picture.width as u32);
    canvas.set_height(picture.height as u32);
    if let (Ok(Some(ctx)), Ok(data)) = (
        canvas.get_context("2d"),
        ImageData::new_with_u8_clamped_array_and_sh(
            wasm_bindgen::Clamped(&picture.rgba),
            picture.width as u32,
            picture.height as u32,
        ),
    ) && let Ok(ctx) = ctx.dyn_into::<CanvasRenderingContext2d>()
    {
        let _ = ctx.put_image_data(&data, 0.0, 0.0);
    }
}

/// Draws a picture into a `<canvas>`, one canvas pixel per picture pixel; reports clicks and
/// hovers as fractions of its size.
#[function_component(Canvas)]
pub fn canvas(props: &CanvasProps) -> Html {
    let node = use_node_ref();
    {
        let node = node.clone();
        use_effect_with(props.picture.clone(), move |picture| {
            if let Some(canvas) = node.cast::<HtmlCanvasElement>() {
                draw(&canvas, picture);
            }
        });
    }
    let on_mouse = |cb: Option<Callback<(f64, f64)>>| {
        cb.map(|cb| {
            Callback::from(move |e: MouseEvent| {
                if let Some(p) = relative(&e) {
                    cb.emit(p)
                }
            })
        })
    };
    let onclick = on_mouse(props.onclick.clone());
    let onmousemove = on_mouse(props.onhover.clone());
    html! { <canvas ref={node} id={props.id.clone()} {onclick} {onmousemove} /> }
}
