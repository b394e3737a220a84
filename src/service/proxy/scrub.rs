//! Masks the credential in a provider's answer. Providers echo requests back more
//! often than one would hope (an error quoting the URL, query string and all), and the
//! caller of the proxy must never receive the secret it was not given. Each occurrence
//! of the secret's values (raw and percent-encoded) becomes `*`s of the same length,
//! so lengths and `Content-Length` still hold. A body arrives in chunks: the last
//! bytes of each are held back until the next shows they do not start a secret.
use bytes::Bytes;
use memchr::memmem;
use zeroize::Zeroizing;

use crate::model::SecretPayload;

/// Values shorter than this are not masked: they would match ordinary text.
const MIN_SECRET_BYTES: usize = 8;

pub struct Scrubber {
    secrets: Vec<Zeroizing<Vec<u8>>>,
    /// Bytes received but not yet passed on.
    held: Zeroizing<Vec<u8>>,
    longest: usize,
}

impl Scrubber {
    /// The values of `secret` that could come back: the key, the access token, the
    /// password, the basic `Authorization` value, each raw and percent-encoded.
    pub fn new(secret: &SecretPayload) -> Self {
        let values: Vec<Zeroizing<String>> = match secret {
            SecretPayload::ApiKey { key } => vec![Zeroizing::new(key.clone())],
            SecretPayload::OAuth2 { access_token, .. } => {
                vec![Zeroizing::new(access_token.clone())]
            }
            SecretPayload::Basic { username, password } => vec![
                Zeroizing::new(password.clone()),
                Zeroizing::new(super::request::basic_value(username, password)),
            ],
        };
        let mut secrets = Vec::new();
        for value in values {
            let encoded: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
            secrets.push(Zeroizing::new(value.as_bytes().to_vec()));
            if encoded != *value {
                secrets.push(Zeroizing::new(encoded.into_bytes()));
            }
        }
        secrets.retain(|s| s.len() >= MIN_SECRET_BYTES);
        let longest = secrets.iter().map(|s| s.len()).max().unwrap_or(0);
        Self {
            secrets,
            held: Zeroizing::new(Vec::new()),
            longest,
        }
    }

    fn mask(&self, bytes: &mut [u8]) {
        for secret in &self.secrets {
            let at: Vec<usize> = memmem::find_iter(bytes, secret.as_slice()).collect();
            for start in at {
                bytes[start..start + secret.len()].fill(b'*');
            }
        }
    }

    /// A header value, masked.
    pub fn text(&self, value: &str) -> String {
        let mut bytes = value.as_bytes().to_vec();
        self.mask(&mut bytes);
        // Only ASCII `*` replaced whole secrets (valid UTF-8 on their own): still text.
        String::from_utf8(bytes).unwrap_or_default()
    }

    /// The next body bytes that are safe to pass on.
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        self.held.extend_from_slice(chunk);
        let mut held = std::mem::take(&mut *self.held);
        self.mask(&mut held);
        // A secret may start in the last `longest - 1` bytes and end in the next chunk.
        let keep = self.longest.saturating_sub(1).min(held.len());
        let tail = held.split_off(held.len() - keep);
        *self.held = tail;
        Bytes::from(held)
    }

    /// What is held back, at the body's end.
    pub fn finish(&mut self) -> Bytes {
        let mut rest = std::mem::take(&mut *self.held);
        self.mask(&mut rest);
        Bytes::from(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> SecretPayload {
        SecretPayload::ApiKey { key: k.into() }
    }

    #[test]
    fn secrets_are_masked_across_chunks_and_lengths_kept() {
        let mut s = Scrubber::new(&key("sk_live_SECRET/1"));
        let body = b"error: bad request to /v1?api_key=sk_live_SECRET%2F1 (sk_live_SECRET/1)";
        let mut out = Vec::new();
        for piece in body.chunks(5) {
            out.extend_from_slice(&s.push(piece));
        }
        out.extend_from_slice(&s.finish());
        assert_eq!(out.len(), body.len());
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.ends_with("(****************)"), "{text}");
    }

    #[test]
    fn short_values_and_other_text_pass_untouched() {
        let mut s = Scrubber::new(&key("k-1"));
        assert_eq!(&s.push(b"k-1 and more")[..], b"k-1 and more");
        let s = Scrubber::new(&SecretPayload::Basic {
            username: "alice".into(),
            password: "correct horse".into(),
        });
        assert_eq!(
            s.text("Basic YWxpY2U6Y29ycmVjdCBob3JzZQ=="),
            "Basic ****************************"
        );
        assert_eq!(s.text("user alice"), "user alice");
    }
}
