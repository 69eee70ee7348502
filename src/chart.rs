//! A small SVG line chart: several series over the step axis, with axis ranges and a legend.

use yew::prelude::*;

#[derive(Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub color: &'static str,
    pub values: Vec<f64>,
    /// Drawn dashed (e.g. the second of two curves that should coincide).
    pub dashed: bool,
}

#[derive(Properties, PartialEq)]
pub struct ChartProps {
    pub id: AttrValue,
    pub title: AttrValue,
    pub series: Vec<Series>,
    #[prop_or(360.0)]
    pub width: f64,
    #[prop_or(180.0)]
    pub height: f64,
    /// Fixed y range (e.g. accuracy 0–1); otherwise the data's range.
    #[prop_or_default]
    pub y_range: Option<(f64, f64)>,
}

const MARGIN_LEFT: f64 = 48.0;
const MARGIN: f64 = 12.0;

#[function_component(Chart)]
pub fn chart(props: &ChartProps) -> Html {
    let finite = props
        .series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| v.is_finite());
    let (lo, hi) = props.y_range.unwrap_or_else(|| {
        finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        })
    });
    let (lo, hi) = if !lo.is_finite() || !hi.is_finite() {
        (0.0, 1.0)
    } else if hi - lo < 1e-9 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    };
    let n = props
        .series
        .iter()
        .map(|s| s.values.len())
        .max()
        .unwrap_or(0)
        .max(2);
    let (w, h) = (props.width, props.height);
    let plot_w = w - MARGIN_LEFT - MARGIN;
    let plot_h = h - 2.0 * MARGIN - 14.0;
    let x = |i: usize| MARGIN_LEFT + plot_w * i as f64 / (n - 1) as f64;
    let y = |v: f64| MARGIN + plot_h * (1.0 - (v - lo) / (hi - lo));
    let paths = props.series.iter().map(|s| {
        let points: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        html! {
            <polyline points={points.join(" ")} fill="none" stroke={s.color} stroke-width="1.5"
                stroke-dasharray={if s.dashed { "4 3" } else { "none" }} />
        }
    });
    html! {
        <figure class="chart">
            <figcaption>{ props.title.clone() }</figcaption>
            <svg id={props.id.clone()} width={w.to_string()} height={h.to_string()} viewBox={format!("0 0 {w} {h}")}>
                <rect x={MARGIN_LEFT.to_string()} y={MARGIN.to_string()} width={plot_w.to_string()} height={plot_h.to_string()} fill="white" stroke="#ccc" />
                <text x={(MARGIN_LEFT - 4.0).to_string()} y={(MARGIN + 8.0).to_string()} text-anchor="end" font-size="10">{ format!("{hi:.3}") }</text>
                <text x={(MARGIN_LEFT - 4.0).to_string()} y={(MARGIN + plot_h).to_string()} text-anchor="end" font-size="10">{ format!("{lo:.3}") }</text>
                <text x={MARGIN_LEFT.to_string()} y={(h - 4.0).to_string()} font-size="10">{ "step 0" }</text>
                <text x={(w - MARGIN).to_string()} y={(h - 4.0).to_string()} text-anchor="end" font-size="10">{ format!("{}", n - 1) }</text>
                { for paths }
            </svg>
            <div class="legend">
                { for props.series.iter().map(|s| html! {
                    <span><span class="swatch" style={format!("background:{}", s.color)}></span>{ s.label.clone() }</span>
                }) }
            </div>
        </figure>
    }
}
