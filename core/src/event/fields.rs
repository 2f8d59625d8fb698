//! Fixed-width fields off the front of untrusted bytes, and the message a
//! context-bound signature covers: shared by the checkpoint and prune
//! record formats.

/// Reads fields off the front of `rest`; a short read is `short` (the
/// format's own "too short" error).
pub(crate) struct Cursor<'a, E> {
    rest: &'a [u8],
    short: E,
}

impl<'a, E: Clone> Cursor<'a, E> {
    /// A cursor over `bytes`.
    pub(crate) fn new(bytes: &'a [u8], short: E) -> Self {
        Cursor { rest: bytes, short }
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], E> {
        let (head, rest) = self
            .rest
            .split_at_checked(n)
            .ok_or_else(|| self.short.clone())?;
        self.rest = rest;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], E> {
        self.take(N)?.try_into().map_err(|_| self.short.clone())
    }

    /// What is left.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.rest
    }
}

/// What a signature covers: `context` (which names the format, so a
/// signature over one kind of record never verifies another), then `body`.
pub(crate) fn signed_message(context: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(context.len() + body.len());
    m.extend_from_slice(context);
    m.extend_from_slice(body);
    m
}
