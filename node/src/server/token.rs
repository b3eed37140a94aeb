//! The cluster secret: what the admin API asks of clients and nodes ask of each other. Empty
//! means the cluster runs without one (open).

use std::sync::Arc;

#[derive(Clone, Default)]
pub struct ClusterToken(Arc<String>);

impl ClusterToken {
    pub fn new(secret: String) -> Self {
        ClusterToken(Arc::new(secret))
    }

    /// No secret: every request is accepted.
    pub fn is_open(&self) -> bool {
        self.0.is_empty()
    }

    pub fn secret(&self) -> &str {
        &self.0
    }

    /// Whether `given` is the secret, compared in constant time (no timing hint to a guesser).
    pub fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        let mut difference = a.len() ^ b.len();
        for i in 0..a.len().max(b.len()) {
            let x = a.get(i).copied().unwrap_or(0);
            let y = b.get(i).copied().unwrap_or(0xFF);
            difference |= usize::from(x ^ y);
        }
        difference == 0
    }

    /// Whether an `Authorization` header value carries the secret.
    pub fn admits_bearer(&self, header: Option<&str>) -> bool {
        self.is_open()
            || header
                .and_then(|h| h.strip_prefix("Bearer "))
                .is_some_and(|t| self.matches(t))
    }
}

#[cfg(test)]
mod tests {
    use super::ClusterToken;

    #[test]
    fn only_the_secret_matches() {
        let token = ClusterToken::new("s3cret".into());
        assert!(token.matches("s3cret"));
        for wrong in ["", "s3cre", "s3cret!", "S3cret", "s3cres"] {
            assert!(!token.matches(wrong), "{wrong:?}");
        }
        assert!(token.admits_bearer(Some("Bearer s3cret")));
        assert!(!token.admits_bearer(Some("s3cret")));
        assert!(!token.admits_bearer(None));
        assert!(ClusterToken::default().admits_bearer(None));
    }
}
