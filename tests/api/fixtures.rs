//! Request builders shared by the tests.
use credvault::proto::v1 as pb;
use tonic::Code;

pub fn api_key(key: &str) -> pb::Secret {
    pb::Secret {
        kind: Some(pb::secret::Kind::ApiKey(pb::ApiKeySecret {
            key: key.into(),
        })),
    }
}

pub fn basic(username: &str, password: &str) -> pb::Secret {
    pb::Secret {
        kind: Some(pb::secret::Kind::Basic(pb::BasicSecret {
            username: username.into(),
            password: password.into(),
        })),
    }
}

pub fn oauth2(access: &str, refresh: &str, expires_at_ms: i64) -> pb::Secret {
    pb::Secret {
        kind: Some(pb::secret::Kind::Oauth2(pb::OAuth2Secret {
            access_token: access.into(),
            refresh_token: refresh.into(),
            token_type: "Bearer".into(),
            scopes: vec!["crm.read".into(), "crm.write".into()],
            expires_at: Some(ts(expires_at_ms)),
        })),
    }
}

pub fn ts(ms: i64) -> prost_types::Timestamp {
    credvault::grpc::convert::timestamp(ms)
}

pub fn create(user_id: &str, secret: pb::Secret) -> pb::CreateCredentialRequest {
    pb::CreateCredentialRequest {
        user_id: user_id.into(),
        user_email: format!("{user_id}@example.com"),
        name: format!("{user_id}'s Salesforce"),
        provider: "salesforce".into(),
        secret: Some(secret),
        ..Default::default()
    }
}

pub fn get(id: &str) -> pb::GetCredentialRequest {
    pb::GetCredentialRequest { id: id.into() }
}

pub fn reveal(id: &str) -> pb::RevealCredentialRequest {
    pb::RevealCredentialRequest {
        id: id.into(),
        request_id: String::new(),
    }
}

pub fn delete(id: &str) -> pb::DeleteCredentialRequest {
    pb::DeleteCredentialRequest { id: id.into() }
}

pub fn update(id: &str) -> pb::UpdateCredentialRequest {
    pb::UpdateCredentialRequest {
        id: id.into(),
        ..Default::default()
    }
}

/// The status of a call that must fail.
pub fn code_of<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> (Code, String) {
    let status = r.expect_err("the call should have failed");
    (status.code(), status.message().to_owned())
}

/// True when `needle` occurs in `haystack` (linear time: the captured logs of a whole
/// test run are large).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}
