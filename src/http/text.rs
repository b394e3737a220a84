//! Every word the hosted connect page shows, in one place so it can be translated:
//! add a table like [`EN`] and pick it per request.

/// The page's texts. `{provider}` and `{n}` are filled in by the page.
#[derive(Debug)]
pub struct Text {
    pub lang: &'static str,
    pub picker_title: &'static str,
    pub picker_intro: &'static str,
    pub picker_empty: &'static str,
    pub form_title: &'static str,
    pub reconnect_title: &'static str,
    pub form_intro: &'static str,
    pub help_link: &'static str,
    pub submit: &'static str,
    pub back: &'static str,
    pub oauth_intro: &'static str,
    pub oauth_continue: &'static str,
    pub success_title: &'static str,
    pub success_body: &'static str,
    pub failure_title: &'static str,
    pub failure_body: &'static str,
    pub close_hint: &'static str,
    pub closed_title: &'static str,
    pub terms: &'static str,
    pub privacy: &'static str,
    pub support: &'static str,
    pub secured_by: &'static str,
    pub error_summary: &'static str,
    pub attempts_left: &'static str,
    pub error_code: &'static str,
    pub sign_in_title: &'static str,
    pub sign_in_intro: &'static str,
    pub username_label: &'static str,
    pub password_label: &'static str,
    pub sign_in: &'static str,
    pub forgot_password: &'static str,
    pub faq: &'static str,
    pub sign_in_terms: &'static str,
}

pub const EN: Text = Text {
    lang: "en",
    picker_title: "Connect an account",
    picker_intro: "Choose the service you want to connect.",
    picker_empty: "There is nothing to connect here. Ask the application for a new link.",
    form_title: "Connect {provider}",
    reconnect_title: "Reconnect {provider}",
    form_intro: "Enter your {provider} details. They are encrypted before they are stored.",
    help_link: "Where do I find these?",
    submit: "Connect",
    back: "Choose another service",
    oauth_intro: "You will sign in at {provider} and come back here.",
    oauth_continue: "Continue to {provider}",
    success_title: "Connected",
    success_body: "Your account is connected.",
    failure_title: "Not connected",
    failure_body: "The account could not be connected.",
    close_hint: "You can close this window now.",
    closed_title: "This link cannot be used",
    terms: "Terms",
    privacy: "Privacy",
    support: "Support",
    secured_by: "Secured by credvault",
    error_summary: "Please correct the highlighted field.",
    attempts_left: "{n} attempts left.",
    error_code: "Error code",
    sign_in_title: "Sign in to {provider}",
    sign_in_intro: "Sign in with your {provider} account to continue.",
    username_label: "Email",
    password_label: "Password",
    sign_in: "Sign in",
    forgot_password: "Forgot your password?",
    faq: "FAQ",
    sign_in_terms: "Terms and conditions",
};

impl Text {
    /// The message of a field error or an outcome code (codes are stable and
    /// documented in docs/connect.md; messages may change).
    pub fn message(&self, code: &str) -> &'static str {
        match code {
            "error_required" => "This field is required.",
            "error_invalid" => {
                "This value is too long or contains characters that are not allowed."
            }
            "error_pattern" => "This value does not have the expected format.",
            "error_rejected" => "The provider rejected these details. Check them and try again.",
            "error_unverified" => {
                "We could not check these details with the provider right now. Please try again."
            }
            "link_not_found" => "This link is not valid. Ask the application for a new one.",
            "link_expired" => "This link has expired. Ask the application for a new one.",
            "link_used" => "This link was already used to connect an account.",
            "link_revoked" => "This link was cancelled. Ask the application for a new one.",
            "too_many_attempts" => {
                "Too many attempts were rejected, so this link was cancelled. Ask the application for a new one."
            }
            "access_denied" => "Access was not granted.",
            "browser_mismatch" => {
                "This sign-in was started in another browser. Start again from the application."
            }
            "provider_not_allowed" => "This service cannot be connected with this link.",
            "rate_limited" => "Too many requests. Wait a minute and try again.",
            "identity_mismatch" => {
                "You signed in as someone this link is not for, so it was cancelled. Ask the application for a new one."
            }
            "sign_in_required" => "Sign in first: open the link again.",
            "sign_in_unavailable" => {
                "Signing in is not available for this link. Ask the application for a new one."
            }
            "invalid_input" => "Enter your email and password.",
            _ => "Something went wrong. Start again from the application.",
        }
    }

    /// `template` with `{provider}` replaced.
    pub fn with_provider(&self, template: &str, provider: &str) -> String {
        template.replace("{provider}", provider)
    }
}
