//! Errors as one line, for messages a client or an operator reads.

/// `e` followed by each of its sources that its text does not already
/// hold, outermost first: `error performing TLS handshake: invalid peer
/// certificate: UnknownIssuer`, where `Display` alone often stops at the
/// first ("connection error").
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connection error")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn sources_follow_once() {
        let e = Outer(std::io::Error::other("certificate required"));
        assert_eq!(chain(&e), "connection error: certificate required");
        let plain = std::io::Error::other("refused");
        assert_eq!(chain(&plain), "refused");
    }
}
