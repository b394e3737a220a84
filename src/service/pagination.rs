//! Opaque cursors for listings in id order: base64url of `v1:<last id>`.
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::error::{Error, Result};
use crate::ids;
use crate::store::Window;

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 1000;

pub fn encode(last_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{last_id}"))
}

/// The id to continue after, checked to be an id with `prefix`.
pub fn decode(token: &str, prefix: &str) -> Result<Option<String>> {
    decode_with(token, |id| ids::is_well_formed(id, prefix))
}

/// The key to continue after, checked by `valid` (for keys that are not our ids).
pub fn decode_with(token: &str, valid: impl Fn(&str) -> bool) -> Result<Option<String>> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || {
        Error::invalid(
            "page_token",
            "is not a token this server issued; start again without it",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let id = text.strip_prefix("v1:").ok_or_else(bad)?;
    if !valid(id) {
        return Err(bad());
    }
    Ok(Some(id.to_owned()))
}

/// `page_size` as asked (0 means the default).
pub fn size(page_size: i32) -> Result<u32> {
    match page_size {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => u32::try_from(n)
            .ok()
            .filter(|n| *n <= MAX_PAGE_SIZE)
            .ok_or_else(|| {
                Error::invalid("page_size", format!("must be from 1 to {MAX_PAGE_SIZE}"))
            }),
    }
}

/// Trims a page fetched with one extra row and says where the next one starts.
pub fn finish<T>(mut items: Vec<T>, size: u32, id: impl Fn(&T) -> &str) -> (Vec<T>, String) {
    if items.len() > size as usize {
        items.truncate(size as usize);
        let next = items.last().map(|i| encode(id(i))).unwrap_or_default();
        (items, next)
    } else {
        (items, String::new())
    }
}

/// One page of a listing, and the token that continues it (empty at the end).
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: String,
}

/// Where a requested page starts and how long it is, checked.
#[derive(Debug)]
pub struct Cursor {
    after: Option<String>,
    size: u32,
}

impl Cursor {
    /// For listings keyed by our ids with `prefix`.
    pub fn new(page_size: i32, page_token: &str, prefix: &str) -> Result<Self> {
        Self::with(page_size, page_token, |id| ids::is_well_formed(id, prefix))
    }

    /// For listings keyed by something else, each key checked by `valid`.
    pub fn with(page_size: i32, page_token: &str, valid: impl Fn(&str) -> bool) -> Result<Self> {
        Ok(Self {
            size: size(page_size)?,
            after: decode_with(page_token, valid)?,
        })
    }

    /// The rows to read: one more than the page, to know whether another follows.
    pub fn window(&self) -> Window<'_> {
        Window {
            after: self.after.as_deref(),
            limit: Some(self.size + 1),
        }
    }

    pub fn finish<T>(&self, items: Vec<T>, key: impl Fn(&T) -> &str) -> Page<T> {
        let (items, next_page_token) = finish(items, self.size, key);
        Page {
            items,
            next_page_token,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_forgeries() {
        let id = ids::new_id(ids::CREDENTIAL_PREFIX);
        assert_eq!(
            decode(&encode(&id), ids::CREDENTIAL_PREFIX).unwrap(),
            Some(id.clone())
        );
        assert!(decode(&encode(&id), ids::EVENT_PREFIX).is_err());
        assert_eq!(decode("", ids::CREDENTIAL_PREFIX).unwrap(), None);
        for bad in ["!!", "djE6eA", "eHl6"] {
            assert!(decode(bad, ids::CREDENTIAL_PREFIX).is_err(), "{bad}");
        }
        assert_eq!(size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert!(size(1001).is_err() && size(-1).is_err());
        let (page, next) = finish(vec!["a", "b", "c"], 2, |s| s);
        assert_eq!((page, next.is_empty()), (vec!["a", "b"], false));
    }
}
