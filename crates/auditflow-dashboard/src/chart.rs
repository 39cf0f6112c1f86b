//! Tiny server-rendered SVG charts, so the dashboard needs no chart library
//! and no JavaScript to draw: a column chart of a series over time and a
//! horizontal bar per category. Colours come from the stylesheet (classes
//! only, no inline styles), so dark mode applies to charts too.

use maud::{html, Markup};

/// Width and height of the chart's coordinate system; the SVG scales to its box.
const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 120.0;

/// A column chart of `values` (oldest first) in `slots` columns, newest at
/// the right (so a series that is still filling up does not stretch), scaled
/// to the largest value. `label` describes it for screen readers; `unit` is
/// appended to the maximum shown under it.
pub fn columns(label: &str, values: &[f64], unit: &str, slots: usize) -> Markup {
    let max = values.iter().copied().fold(0.0_f64, f64::max);
    let slots = slots.max(values.len()).max(1);
    let offset = slots - values.len();
    let slot = WIDTH / slots as f64;
    let gap = (slot * 0.15).min(2.0);
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } preserveAspectRatio="none" role="img" aria-label=(label) {
                line.axis x1="0" y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) {}
                @for (i, value) in values.iter().enumerate() {
                    @let height = if max > 0.0 { value / max * (HEIGHT - 4.0) } else { 0.0 };
                    rect.bar x=(format!("{:.2}", (offset + i) as f64 * slot + gap / 2.0)) y=(format!("{:.2}", HEIGHT - height))
                        width=(format!("{:.2}", (slot - gap).max(0.5))) height=(format!("{:.2}", height)) {
                        title { (format_value(*value)) (unit) }
                    }
                }
            }
            figcaption { (label) ": max " (format_value(max)) (unit) }
        }
    }
}

/// One horizontal bar per `(name, count)`, scaled to the largest count.
pub fn bars(items: &[(String, u64)]) -> Markup {
    let max = items.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    html! {
        table.bars {
            tbody {
                @for (name, count) in items {
                    tr {
                        th scope="row" { (name) }
                        td.count { (count) }
                        td.bar-cell {
                            svg.hbar viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true" {
                                rect.bar x="0" y="0" height="10" width=(format!("{:.1}", *count as f64 / max as f64 * 100.0)) {}
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A value with at most one decimal, trailing `.0` dropped.
fn format_value(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_scale_to_the_largest_value() {
        let svg = columns("events/s", &[0.0, 5.0, 10.0], " /s", 3).0;
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("height=\"116.00\""), "{svg}");
        assert!(svg.contains("max 10 /s"), "{svg}");
    }

    #[test]
    fn a_short_series_sits_at_the_right_in_narrow_columns() {
        let svg = columns("alerts", &[1.0], "", 60).0;
        assert!(svg.contains("x=\"590.75\""), "{svg}");
        assert!(svg.contains("width=\"8.50\""), "{svg}");
    }

    #[test]
    fn bars_escape_their_names() {
        let html = bars(&[("<script>x</script>".into(), 3), ("b".into(), 1)]).0;
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("width=\"100.0\""), "{html}");
        assert!(html.contains("width=\"33.3\""), "{html}");
    }

    #[test]
    fn values_drop_useless_decimals() {
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(2.46), "2.5");
    }
}
