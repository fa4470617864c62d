//! DC/OS credentials: a static token (`Authorization: token=…`), or a login
//! (`POST /acs/api/v1/auth/login`) with a password (`{"uid","password"}`) or a
//! service account key (`{"uid","token"}`, the token an RS256 JWT `{uid, exp}`
//! signed with the key). A login is a [`TokenSource`]: its token is renewed before
//! its `exp` and when a request is refused (see `crate::http::auth`). Every
//! secret (token, password, key, login token) is scrubbed from error texts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::http::api::Api;
use crate::http::auth::{Credentials, JwtAnswer, Token, TokenSource};
use crate::http::client::scrub;
use crate::http::stream::Ended;
use crate::secret::Secret;

/// How long a service-login JWT is valid.
const SERVICE_LOGIN_TTL: Duration = Duration::from_secs(300);

pub(crate) enum LoginSecret {
    Password(Secret),
    ServiceKey { key: RsaKeyPair, pem: Secret },
}

impl LoginSecret {
    /// Reads a PEM RSA private key (`BEGIN PRIVATE KEY` or `BEGIN RSA PRIVATE KEY`).
    pub fn service_key(pem: &Secret) -> anyhow::Result<Self> {
        let text = pem.expose();
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::trim)
            .collect();
        let der = STANDARD
            .decode(body)
            .map_err(|_| anyhow::anyhow!("`service_key` is not a PEM private key"))?;
        let key = if text.contains("BEGIN RSA PRIVATE KEY") {
            RsaKeyPair::from_der(&der)
        } else {
            RsaKeyPair::from_pkcs8(&der)
        }
        .map_err(|e| anyhow::anyhow!("`service_key` is not a usable RSA private key: {e}"))?;
        Ok(LoginSecret::ServiceKey {
            key,
            pem: pem.clone(),
        })
    }

    fn scrub(&self, text: &str) -> String {
        match self {
            LoginSecret::Password(secret) | LoginSecret::ServiceKey { pem: secret, .. } => {
                scrub(text, secret)
            }
        }
    }

    /// The login request body for `uid`.
    fn body(&self, uid: &str) -> anyhow::Result<serde_json::Value> {
        Ok(match self {
            LoginSecret::Password(password) => {
                serde_json::json!({ "uid": uid, "password": password.expose() })
            }
            LoginSecret::ServiceKey { key, .. } => {
                serde_json::json!({ "uid": uid, "token": service_jwt(key, uid)? })
            }
        })
    }
}

/// An RS256 JWT `{"uid", "exp"}` signed with `key`.
fn service_jwt(key: &RsaKeyPair, uid: &str) -> anyhow::Result<String> {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(SERVICE_LOGIN_TTL)
        .as_secs();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(serde_json::json!({ "uid": uid, "exp": exp }).to_string());
    let signing_input = format!("{header}.{claims}");
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| anyhow::anyhow!("cannot sign the service login token"))?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

/// What comes before a DC/OS token in `Authorization`.
const TOKEN_PREFIX: &str = "token=";

/// Credentials from a static token.
pub(crate) fn static_token(token: &Secret) -> anyhow::Result<Credentials> {
    Credentials::fixed("authorization", TOKEN_PREFIX, token)
}

/// A login as `uid`, repeated whenever a fresh token is needed.
pub(crate) struct Login {
    pub url: String,
    pub uid: String,
    pub secret: LoginSecret,
    pub timeout: Duration,
}

#[async_trait]
impl TokenSource for Login {
    async fn fetch(&self, api: &Api) -> Result<Token, Ended> {
        let body = self
            .secret
            .body(&self.uid)
            .map_err(|e| Ended::Lost(e.to_string()))?;
        let response = api
            .send_anonymous(|client| client.post(&self.url).json(&body).timeout(self.timeout))
            .await
            .map_err(|ended| ended.context(&format!("login as {}", self.uid), |t| self.scrub(t)))?;
        api.read_json::<JwtAnswer>(response)
            .await?
            .token(TOKEN_PREFIX)
    }

    fn scrub(&self, text: &str) -> String {
        self.secret.scrub(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_service_keys_are_refused_without_echoing_them() {
        let error = LoginSecret::service_key(&Secret::new(
            "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----",
        ))
        .err()
        .unwrap();
        assert!(!error.to_string().contains("not base64"));
    }
}
