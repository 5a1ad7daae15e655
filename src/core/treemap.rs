//! A squarified treemap (Bruls, Huizing and van Wijk, 2000): rectangles whose areas are
//! proportional to the values, as close to squares as the greedy rows allow.

/// A rectangle: x, y, width, height.
pub type Rect = (f64, f64, f64, f64);

/// Lays out `values` in `area`; one rectangle per value, in the values' order (a value of zero
/// gets an empty rectangle).
pub fn layout(values: &[u64], area: Rect) -> Vec<Rect> {
    let mut out = vec![(area.0, area.1, 0.0, 0.0); values.len()];
    let total: f64 = values.iter().map(|v| *v as f64).sum();
    if total <= 0.0 || area.2 <= 0.0 || area.3 <= 0.0 {
        return out;
    }
    let scale = area.2 * area.3 / total;
    let mut items: Vec<(usize, f64)> =
        values.iter().enumerate().filter(|(_, v)| **v > 0).map(|(i, v)| (i, *v as f64 * scale)).collect();
    items.sort_by(|a, b| b.1.total_cmp(&a.1));
    squarify(&items, area, &mut out);
    out
}

/// The worst aspect ratio of a row of areas laid along a side of length `side`.
fn worst(row: &[(usize, f64)], side: f64) -> f64 {
    let sum: f64 = row.iter().map(|r| r.1).sum();
    let (max, min) = row.iter().fold((0f64, f64::MAX), |(mx, mn), r| (mx.max(r.1), mn.min(r.1)));
    let s2 = side * side;
    (s2 * max / (sum * sum)).max(sum * sum / (s2 * min))
}

fn squarify(items: &[(usize, f64)], (x, y, w, h): Rect, out: &mut [Rect]) {
    if items.is_empty() {
        return;
    }
    let side = w.min(h);
    let mut n = 1;
    while n < items.len() && worst(&items[..=n], side) <= worst(&items[..n], side) {
        n += 1;
    }
    let (row, rest) = items.split_at(n);
    let sum: f64 = row.iter().map(|r| r.1).sum();
    if w >= h {
        // A column on the left.
        let cw = sum / h;
        let mut cy = y;
        for (i, a) in row {
            out[*i] = (x, cy, cw, a / cw);
            cy += a / cw;
        }
        squarify(rest, (x + cw, y, w - cw, h), out);
    } else {
        // A row along the top.
        let rh = sum / w;
        let mut cx = x;
        for (i, a) in row {
            out[*i] = (cx, y, a / rh, rh);
            cx += a / rh;
        }
        squarify(rest, (x, y + rh, w, h - rh), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_are_proportional_and_tile_the_whole() {
        let values = [6, 6, 4, 3, 2, 2, 1, 0];
        let rects = layout(&values, (0.0, 0.0, 600.0, 400.0));
        let total: f64 = rects.iter().map(|r| r.2 * r.3).sum();
        assert!((total - 240_000.0).abs() < 1e-6);
        for (v, r) in values.iter().zip(&rects) {
            assert!((r.2 * r.3 - *v as f64 * 10_000.0).abs() < 1e-6, "{v}: {r:?}");
            assert!(r.0 >= -1e-9 && r.1 >= -1e-9 && r.0 + r.2 <= 600.0 + 1e-6 && r.1 + r.3 <= 400.0 + 1e-6);
        }
    }
}
