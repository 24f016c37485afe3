//! Plain-text tables in the style of `heroku pg:backups`.

/// Renders rows under a header, columns padded to their widest cell, with a rule under the
/// header. Widths count characters, so non-ASCII names line up.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    // Cells can hold what someone else typed (a user name tried at the login, a token's
    // label): control characters would move the terminal's cursor or retitle its window.
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| printable(c)).collect())
        .collect();
    let rows = rows.as_slice();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| -> String {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(cell);
            if i + 1 < cells.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.push_str(&" ".repeat(pad));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    out.push_str(&line(widths.iter().map(|w| "─".repeat(*w)).collect()));
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

/// `s` with control characters shown as `?`, so that a table never drives the terminal.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn pads_columns() {
        let t = super::render(
            &["ID", "Size"],
            &[
                vec!["b001".into(), "1MB".into()],
                vec!["b0010".into(), "É".into()],
            ],
        );
        assert_eq!(t, "ID     Size\n─────  ────\nb001   1MB\nb0010  É\n");
    }

    #[test]
    fn a_cell_cannot_drive_the_terminal() {
        let t = super::render(&["Who"], &[vec!["x\u{1b}]0;pwned\u{7}\u{1b}[2J".into()]]);
        assert!(!t.contains('\u{1b}') && !t.contains('\u{7}'), "{t:?}");
        assert!(t.contains("x?]0;pwned??[2J"), "{t:?}");
    }
}
