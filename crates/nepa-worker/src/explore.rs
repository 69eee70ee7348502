//! The Explore tab's renders: the five NEPA maps of an image for a selection. One render runs
//! at a time; a newer `Render` replaces one still waiting (which answers `Done`).

use std::rc::Rc;

use nepa::viz::{
    Analysis, HeadSel, LayerSel, Selection, SimilarityMode, analyse, display_scale, first_query,
    render_panels,
};
use nepa_protocol::{PanelView, RenderedView, Reply, ViewKey, WebError};
use wasm_bindgen_futures::spawn_local;

use crate::bridge::Responder;
use crate::images::PixelBuffer;
use crate::state::Engine;

/// `Render`: runs now, or waits in the single queue slot (replacing a waiting one).
pub fn render(engine: Rc<Engine>, r: Responder, key: ViewKey) {
    let renders = &engine.renders;
    if renders.running.get() {
        if let Some((old, _)) = renders.pending.borrow_mut().replace((r, key)) {
            old.reply(Reply::Done);
        }
        return;
    }
    renders.running.set(true);
    spawn_local(async move {
        let mut next = Some((r, key));
        while let Some((r, key)) = next {
            match render_one(&engine, key).await {
                Ok(Some((view, bytes))) => r.reply_with_bytes(Reply::Rendered(view), &bytes),
                Ok(None) => r.reply(Reply::Done),
                Err(e) => r.fail(e),
            }
            next = engine.renders.pending.borrow_mut().take();
        }
        engine.renders.running.set(false);
    });
}

/// The analysis of (current model, image): the kept one, else a forward pass (its time).
async fn analysis_for(
    engine: &Engine,
    key: &ViewKey,
) -> Result<Option<(Rc<Analysis>, Option<f64>)>, WebError> {
    let version = engine.version.get();
    if key.model_version != version {
        return Ok(None);
    }
    if let Some((v, image, a)) = engine.renders.analysis.borrow().as_ref()
        && (*v, *image) == (version, key.image)
    {
        return Ok(Some((a.clone(), None)));
    }
    let model = engine.model()?;
    let device = engine.ready_device().await?;
    let upload = engine.image(key.image)?;
    let analysis = analyse(&model.model, &model.config, &upload.image, &device.device)
        .await
        .map_err(|e| WebError::model(format!("{}: {e}", upload.name)))?;
    // The model may have changed while the forward pass ran: then this result is stale.
    if engine.version.get() != version {
        return Ok(None);
    }
    let analysis = Rc::new(analysis);
    *engine.renders.analysis.borrow_mut() = Some((version, key.image, analysis.clone()));
    Ok(Some((analysis.clone(), Some(analysis.forward_ms))))
}

fn selection(key: &ViewKey, analysis: &Analysis) -> Selection {
    let grid = analysis.maps.grid();
    let s = key.selection;
    Selection {
        query: s.query.map_or_else(
            || first_query(&analysis.maps),
            |(row, col)| {
                (
                    row.min(grid.rows.saturating_sub(1)),
                    col.min(grid.cols.saturating_sub(1)),
                )
            },
        ),
        layer: s.layer.map_or(LayerSel::All, LayerSel::Layer),
        head: s.head.map_or(HeadSel::Mean, HeadSel::Head),
        similarity: if s.softmax {
            SimilarityMode::Softmax
        } else {
            SimilarityMode::Raw
        },
    }
}

/// One render; `None` when it is stale (another model version).
async fn render_one(
    engine: &Engine,
    key: ViewKey,
) -> Result<Option<(RenderedView, Vec<u8>)>, WebError> {
    let Some((analysis, forward_ms)) = analysis_for(engine, &key).await? else {
        return Ok(None);
    };
    let model = engine.model()?;
    let panels = render_panels(
        &analysis,
        &selection(&key, &analysis),
        display_scale(&model.config),
    )
    .map_err(WebError::from)?;
    let mut buffer = PixelBuffer::default();
    let views = panels
        .panels
        .into_iter()
        .map(|p| PanelView {
            id: p.id.to_string(),
            caption: p.caption().to_string(),
            title: p.title,
            pixels: buffer.push(&p.image),
            colorbar: p.colorbar,
            // JSON has no NaN: a non-finite value would make the message unreadable.
            values: p.values.into_iter().map(finite).collect(),
        })
        .collect();
    let view = RenderedView {
        key,
        grid_rows: panels.grid.rows,
        grid_cols: panels.grid.cols,
        query_token: panels.query_token,
        cls_attention: finite(panels.cls_attention),
        panels: views,
        forward_ms,
    };
    Ok(Some((view, buffer.bytes)))
}

fn finite(v: f32) -> f32 {
    if v.is_finite() { v } else { 0.0 }
}
