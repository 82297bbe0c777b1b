//! Terminal tables without borders (comfy-table): each column as wide as
//! its widest cell and at least its minimum width, columns `gap` spaces
//! apart, no trailing spaces. The culprit table, the matrix's kernels ×
//! labs table and the calibration's noise table are laid out here.

use comfy_table::{CellAlignment, ColumnConstraint, Table, TableStyle, Width};

/// How a column's cells (its header too) sit in its width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// One column: its header, alignment and minimum width (characters).
#[derive(Debug, Clone)]
pub struct Column {
    pub header: String,
    pub align: Align,
    pub min: u16,
}

impl Column {
    pub fn left(header: impl Into<String>, min: u16) -> Column {
        Column { header: header.into(), align: Align::Left, min }
    }

    pub fn right(header: impl Into<String>, min: u16) -> Column {
        Column { header: header.into(), align: Align::Right, min }
    }
}

/// The table's lines, the header first. A row shorter than the header is
/// padded with empty cells.
pub fn lines(columns: &[Column], rows: &[Vec<String>], gap: u16) -> Vec<String> {
    let mut t = Table::new();
    t.load_style(TableStyle::new());
    t.set_header(columns.iter().map(|c| c.header.clone()).collect::<Vec<_>>());
    for r in rows {
        let mut r = r.clone();
        r.resize(columns.len(), String::new());
        t.add_row(r);
    }
    for (i, c) in columns.iter().enumerate() {
        let pad = if i == 0 { 0 } else { gap };
        let col = t.column_mut(i).expect("a column per header cell");
        col.set_padding((pad, 0));
        col.set_cell_alignment(match c.align {
            Align::Left => CellAlignment::Left,
            Align::Right => CellAlignment::Right,
        });
        // The lower bound counts the padding.
        col.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(c.min + pad)));
    }
    t.lines().map(|l| l.trim_end().to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_keep_their_minimum_and_grow_for_a_wider_cell() {
        let cols = [Column::left("NAME", 6), Column::right("N", 4), Column::left("NOTE", 0)];
        let rows = vec![vec!["a".into(), "1".into(), "x".into()], vec!["b".into(), "22".into()]];
        assert_eq!(lines(&cols, &rows, 1), ["NAME      N NOTE", "a         1 x", "b        22"]);
        // A cell wider than the minimum widens its column for every row.
        let rows = vec![vec!["a-long-name".into(), "12345".into(), "x".into()], vec!["b".into(), "2".into(), "y".into()]];
        assert_eq!(lines(&cols, &rows, 2), ["NAME             N  NOTE", "a-long-name  12345  x", "b                2  y"]);
        // Characters count, not bytes.
        let rows = vec![vec!["Δ→".into(), "1".into(), String::new()]];
        assert_eq!(lines(&cols, &rows, 1)[1], "Δ→        1");
    }
}
