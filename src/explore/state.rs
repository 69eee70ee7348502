//! The Explore tab's state: the selection, the view on screen and the one it waits for.

use std::rc::Rc;

use nepa_protocol::{RenderedView, Selection, ViewKey};
use yew::prelude::*;

use crate::picture::Picture;

/// One map as the page keeps it: the picture shared with its canvas (hovering does not
/// redraw it) and the per-patch values for the hover readout.
#[derive(Debug, PartialEq)]
pub struct ShownPanel {
    pub id: String,
    pub title: String,
    pub caption: String,
    pub picture: Rc<Picture>,
    pub colorbar: Option<(String, String)>,
    pub values: Rc<Vec<f32>>,
}

/// A rendered view with its pictures cut out of the payload.
#[derive(Debug, PartialEq)]
pub struct ShownView {
    pub key: ViewKey,
    pub grid_rows: usize,
    pub grid_cols: usize,
    pub query_token: usize,
    pub cls_attention: f32,
    pub panels: Vec<ShownPanel>,
}

impl ShownView {
    pub fn new(view: RenderedView, payload: &[u8]) -> Option<ShownView> {
        let panels = view
            .panels
            .into_iter()
            .map(|p| {
                Some(ShownPanel {
                    picture: Rc::new(Picture::from_payload(&p.pixels, payload)?),
                    id: p.id,
                    title: p.title,
                    caption: p.caption,
                    colorbar: p.colorbar,
                    values: Rc::new(p.values),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(ShownView {
            key: view.key,
            grid_rows: view.grid_rows.max(1),
            grid_cols: view.grid_cols.max(1),
            query_token: view.query_token,
            cls_attention: view.cls_attention,
            panels,
        })
    }
}

/// "Adapt to my images": its status line and whether it runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Adapting {
    pub status: String,
    pub running: bool,
}

#[derive(Clone, Default, PartialEq)]
pub struct ExploreState {
    pub selection: Selection,
    /// The key of the view the page waits for; a rendered view with another key is stale.
    pub wanted: Option<ViewKey>,
    pub view: Option<Rc<ShownView>>,
    pub first_ms: Option<f64>,
    pub last_ms: Option<f64>,
    pub error: Option<String>,
    pub adapting: Option<Adapting>,
}

impl ExploreState {
    /// Whether the page waits for a view it does not show yet.
    pub fn waiting(&self) -> bool {
        self.wanted.is_some() && self.view.as_ref().map(|v| v.key) != self.wanted
    }
}

pub enum ExploreMsg {
    Query(usize, usize),
    Layer(Option<usize>),
    Head(Option<usize>),
    Softmax(bool),
    /// The model has this many layers and heads now: a selection beyond them is reset.
    ModelShape {
        layers: usize,
        heads: usize,
    },
    Want(ViewKey),
    Rendered(Rc<ShownView>, Option<f64>),
    Failed(ViewKey, String),
    /// Adaptation runs: its status line.
    AdaptStatus(String),
    /// Adaptation ended: the last status stays.
    AdaptEnded,
}

impl Reducible for ExploreState {
    type Action = ExploreMsg;

    fn reduce(self: Rc<Self>, msg: ExploreMsg) -> Rc<Self> {
        let mut s = Rc::unwrap_or_clone(self);
        match msg {
            ExploreMsg::Query(row, col) => s.selection.query = Some((row, col)),
            ExploreMsg::Layer(l) => s.selection.layer = l,
            ExploreMsg::Head(h) => s.selection.head = h,
            ExploreMsg::Softmax(b) => s.selection.softmax = b,
            ExploreMsg::ModelShape { layers, heads } => {
                s.selection.layer = s.selection.layer.filter(|l| *l < layers);
                s.selection.head = s.selection.head.filter(|h| *h < heads);
            }
            ExploreMsg::Want(key) => {
                s.wanted = Some(key);
                s.error = None;
            }
            // Only the view asked for last is shown: an older one arriving late is dropped.
            ExploreMsg::Rendered(view, forward_ms) if s.wanted == Some(view.key) => {
                if let Some(ms) = forward_ms {
                    match s.first_ms {
                        None => s.first_ms = Some(ms),
                        Some(_) => s.last_ms = Some(ms),
                    }
                }
                s.view = Some(view);
            }
            ExploreMsg::Rendered(..) => {}
            ExploreMsg::Failed(key, e) if s.wanted == Some(key) => {
                s.error = Some(e);
                s.wanted = None;
            }
            ExploreMsg::Failed(..) => {}
            ExploreMsg::AdaptStatus(status) => {
                s.adapting = Some(Adapting {
                    status,
                    running: true,
                })
            }
            ExploreMsg::AdaptEnded => {
                if let Some(a) = &mut s.adapting {
                    a.running = false;
                }
            }
        }
        Rc::new(s)
    }
}
