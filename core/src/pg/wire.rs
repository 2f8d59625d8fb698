//! A bounds-checked reader over a message body. Every read returns `None`
//! instead of panicking when the body is shorter than the field.

/// Reads fields from a message body front to back.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `body`.
    pub fn new(body: &'a [u8]) -> Self {
        Reader { rest: body }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> &'a [u8] {
        self.rest
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    /// One byte.
    pub fn u8(&mut self) -> Option<u8> {
        let (&b, tail) = self.rest.split_first()?;
        self.rest = tail;
        Some(b)
    }

    /// A big-endian i16.
    pub fn i16(&mut self) -> Option<i16> {
        let b = self.bytes(2)?;
        Some(i16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }

    /// A big-endian i32.
    pub fn i32(&mut self) -> Option<i32> {
        let b: [u8; 4] = self.bytes(4)?.try_into().ok()?;
        Some(i32::from_be_bytes(b))
    }

    /// A NUL-terminated string, without its terminator, as raw bytes.
    pub fn cstr_bytes(&mut self) -> Option<&'a [u8]> {
        let end = self.rest.iter().position(|&b| b == 0)?;
        let s = self.bytes(end)?;
        self.u8()?;
        Some(s)
    }

    /// A NUL-terminated string that must be UTF-8.
    pub fn cstr(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.cstr_bytes()?).ok()
    }

    /// A length-prefixed value as in Bind and DataRow: `-1` is NULL.
    /// `Some(None)` is NULL, `None` is a malformed field.
    pub fn value(&mut self) -> Option<Option<&'a [u8]>> {
        let len = self.i32()?;
        if len == -1 {
            return Some(None);
        }
        let len = usize::try_from(len).ok()?;
        Some(Some(self.bytes(len)?))
    }
}

/// Appends a NUL-terminated string.
pub fn put_cstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reads_are_none_not_panics() {
        let mut r = Reader::new(&[0, 1]);
        assert_eq!(r.i32(), None);
        assert_eq!(r.i16(), Some(1));
        assert_eq!(r.u8(), None);
        let mut r = Reader::new(b"abc");
        assert_eq!(r.cstr(), None);
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 9, 1]);
        assert_eq!(r.value(), Some(None));
        assert_eq!(r.value(), None);
        let mut r = Reader::new(&[0x80, 0, 0, 0]);
        assert_eq!(r.value(), None);
    }
}
