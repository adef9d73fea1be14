//! sqlparser locations (line and column in characters, 1-based) to byte offsets.

use sqlparser::tokenizer::Location;

/// Maps parser locations to byte offsets of one text, in O(1) each after O(n) setup.
/// sqlparser starts a new line at each `\n` and counts every other character,
/// `\r` included, as a column.
pub(crate) struct Locator<'a> {
    text: &'a str,
    /// Per line: byte offset of its start, and (for non-ASCII text) the index of its
    /// first character in `chars`.
    lines: Vec<(usize, usize)>,
    /// Byte offset of every character, then the text's length; empty for ASCII text,
    /// where a column is a byte count.
    chars: Vec<usize>,
}

impl<'a> Locator<'a> {
    /// A locator for `text`.
    pub(crate) fn new(text: &'a str) -> Self {
        let mut lines = vec![(0, 0)];
        let mut chars = Vec::new();
        if text.is_ascii() {
            lines.extend(text.match_indices('\n').map(|(i, _)| (i + 1, 0)));
        } else {
            for (n, (i, c)) in text.char_indices().enumerate() {
                chars.push(i);
                if c == '\n' {
                    lines.push((i + 1, n + 1));
                }
            }
            chars.push(text.len());
        }
        Locator { text, lines, chars }
    }

    /// The byte offset of `at`, or `None` when it is not in the text (sqlparser gives
    /// line 0 to nodes it made up).
    pub(crate) fn byte(&self, at: Location) -> Option<usize> {
        let &(line_byte, line_char) = self.lines.get((at.line as usize).checked_sub(1)?)?;
        let column = (at.column as usize).checked_sub(1)?;
        let byte = if self.chars.is_empty() {
            line_byte + column
        } else {
            *self.chars.get(line_char + column)?
        };
        (byte <= self.text.len()).then_some(byte)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_characters_and_lines_start_after_newlines() {
        let text = "ab\nçd\r\né'x'";
        let at = |line, column| Locator::new(text).byte(Location { line, column });
        assert_eq!(at(1, 1), Some(0));
        assert_eq!(at(2, 2), Some(5));
        assert_eq!(at(3, 2), Some(10));
        assert_eq!(at(3, 5), Some(text.len()));
        assert_eq!(at(0, 0), None);
        assert_eq!(at(9, 1), None);
    }
}
