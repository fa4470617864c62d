//! DC/OS credentials: a static token, or a login (`POST /acs/api/v1/auth/login`)
//! with a password (`{"uid","password"}`) or a service account key
//! (`{"uid","token"}`, the token an RS256 JWT `{uid, exp}` signed with the key).
//! A login token is reused until a request is refused with 401, then replaced by a
//! fresh login. Every secret (token, password, key, login token) is scrubbed from
//! error texts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use tokio::sync::Mutex;

use crate::config::Secret;
use crate::http::client::{AuthHeader, HttpFailure, scrub};
use crate::http::stream::{Ended, RETRY_AFTER_CAP, error_chain};

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

pub(crate) enum Credentials {
    Token(AuthHeader),
    Login(Login),
}

pub(crate) struct Login {
    client: reqwest::Client,
    url: String,
    uid: String,
    secret: LoginSecret,
    timeout: Duration,
    current: Mutex<Option<AuthHeader>>,
}

impl Credentials {
    pub fn token(token: &Secret) -> anyhow::Result<Self> {
        Ok(Credentials::Token(AuthHeader::new(
            "authorization",
            "token=",
            token,
        )?))
    }

    pub fn login(
        client: reqwest::Client,
        base: &str,
        uid: String,
        secret: LoginSecret,
        timeout: Duration,
    ) -> Self {
        Credentials::Login(Login {
            client,
            url: format!("{base}/acs/api/v1/auth/login"),
            uid,
            secret,
            timeout,
            current: Mutex::new(None),
        })
    }

    /// The header to send, logging in first if there is no valid token.
    pub async fn header(&self) -> Result<AuthHeader, Ended> {
        match self {
            Credentials::Token(header) => Ok(header.clone()),
            Credentials::Login(login) => {
                let mut current = login.current.lock().await;
                if let Some(header) = current.as_ref() {
                    return Ok(header.clone());
                }
                let header = login.login().await?;
                *current = Some(header.clone());
                Ok(header)
            }
        }
    }

    /// A request made with `used` got 401: forget that token. `true` when a fresh
    /// login may help (a login-based credential whose token just expired).
    pub async fn refused(&self, used: &AuthHeader) -> bool {
        match self {
            Credentials::Token(_) => false,
            Credentials::Login(login) => {
                let mut current = login.current.lock().await;
                if current.as_ref().is_some_and(|c| c.same_value(used)) {
                    *current = None;
                }
                true
            }
        }
    }

    /// `text` without any configured secret in it.
    pub fn scrub(&self, text: &str) -> String {
        match self {
            Credentials::Token(header) => header.scrub(text),
            Credentials::Login(login) => login.secret.scrub(text),
        }
    }
}

#[derive(serde::Deserialize)]
struct LoginResponse {
    token: String,
}

impl Login {
    async fn login(&self) -> Result<AuthHeader, Ended> {
        let body = self
            .secret
            .body(&self.uid)
            .map_err(|e| Ended::Lost(e.to_string()))?;
        let response = self
            .client
            .post(&self.url)
            .json(&body)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| {
                Ended::Lost(format!(
                    "login failed: {}",
                    self.secret.scrub(&error_chain(&e))
                ))
            })?;
        if !response.status().is_success() {
            let mut failure = HttpFailure::from_response(response, None, RETRY_AFTER_CAP).await;
            failure.detail = self
                .secret
                .scrub(&format!("login as {}: {}", self.uid, failure.detail));
            return Err(Ended::Failed(failure));
        }
        let parsed: LoginResponse = response
            .json()
            .await
            .map_err(|e| Ended::Lost(format!("unexpected login response: {}", error_chain(&e))))?;
        AuthHeader::new("authorization", "token=", &Secret::new(parsed.token))
            .map_err(|e| Ended::Lost(e.to_string()))
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
