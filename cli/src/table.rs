//! Plain-text tables for stdout: left-aligned columns two spaces apart,
//! the header in capitals, nothing else (easy to read and to `awk`).

/// Renders `header` and `rows` as aligned lines, each ending in '\n'.
/// A row shorter than the header leaves its last cells empty.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(widths.len()) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_cells: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_cells).chain(rows) {
        let mut line = String::new();
        for (i, width) in widths.iter().enumerate() {
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            if i + 1 == widths.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Broker ids as "1,2,3" ("-" for none).
pub fn ids(ids: &[i32]) -> String {
    if ids.is_empty() {
        return "-".to_string();
    }
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_to_the_widest_cell() {
        let rows = vec![
            vec!["orders".to_string(), "3".to_string(), "3".to_string()],
            vec!["a".to_string(), "12".to_string()],
        ];
        assert_eq!(
            render(&["TOPIC", "PARTITIONS", "REPLICATION-FACTOR"], &rows),
            "TOPIC   PARTITIONS  REPLICATION-FACTOR\n\
             orders  3           3\n\
             a       12\n"
        );
    }

    #[test]
    fn broker_id_lists() {
        assert_eq!(ids(&[2, 0, 1]), "2,0,1");
        assert_eq!(ids(&[]), "-");
    }
}
