//! COPY data, in either direction.

use crate::transcript::Copy;

/// Adds COPY data: text format is split into lines (a line may span
/// messages), binary format kept per message in hex. `masked`: the gateway
/// masked this message, so every line it is part of is marked.
pub(super) fn copy_data(copy: &mut Copy, data: &[u8], cap: Option<usize>, masked: bool) {
    copy.bytes += data.len() as u64;
    if copy.format == "binary" {
        push_line(copy, crate::text::hex(data), cap, masked);
        return;
    }
    copy.partial.extend_from_slice(data);
    copy.partial_masked |= masked;
    while let Some(end) = copy.partial.iter().position(|b| *b == b'\n') {
        let rest = copy.partial.split_off(end + 1);
        let mut line = std::mem::replace(&mut copy.partial, rest);
        line.truncate(end);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        let line_masked = copy.partial_masked;
        push_line(copy, line, cap, line_masked);
        // What is left came from this message alone.
        copy.partial_masked = masked;
    }
    if copy.partial.is_empty() {
        copy.partial_masked = false;
    }
}

/// The end of COPY data: an unterminated last line still counts.
pub(super) fn copy_flush(copy: &mut Copy, cap: Option<usize>) {
    if !copy.partial.is_empty() {
        let line = String::from_utf8_lossy(&std::mem::take(&mut copy.partial)).into_owned();
        let masked = std::mem::take(&mut copy.partial_masked);
        push_line(copy, line, cap, masked);
    }
}

fn push_line(copy: &mut Copy, line: String, cap: Option<usize>, masked: bool) {
    copy.lines_received += 1;
    if masked {
        copy.lines_masked += 1;
    }
    if cap.is_none_or(|cap| copy.lines.len() < cap) {
        if masked {
            copy.masked_lines.push(copy.lines.len());
        }
        copy.lines.push(line);
    }
}
