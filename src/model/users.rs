//! End users: the people a tenant's credentials belong to.
use crate::clock::Millis;

/// An end user as stored. Emails are unique per tenant, compared by [`email_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndUser {
    pub tenant_id: String,
    pub user_id: String,
    pub email: Option<String>,
    /// The user's id in the tenant's own auth system.
    pub external_id: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// The form of an email that uniqueness is checked on: trimmed and lowercased.
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    #[test]
    fn emails_compare_without_case_or_surrounding_space() {
        assert_eq!(super::email_key(" Ada@Example.COM "), "ada@example.com");
        assert_eq!(super::email_key("ÉLODIE@x.fr"), "élodie@x.fr");
    }
}
