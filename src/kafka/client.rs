//! The options every Kafka component takes (written as plain keys of the component's
//! table: `bootstrap_servers`, `sasl`, `tls`, `librdkafka_options`), turned into a
//! librdkafka `ClientConfig`. Secrets (the SASL password, the TLS key password) come
//! inline (usually `${ENV}`) or from a `*_file`, and never appear in logs or errors:
//! the `ClientConfig` holding them is never printed, and an error about a
//! passthrough option names the option, not its value.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use serde::Deserialize;

use crate::secret::{Secret, resolve_secret};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaClientOptions {
    /// Initial brokers, `host:port[,host:port…]`; the rest of the cluster is learned
    /// from them.
    pub bootstrap_servers: String,
    /// SASL authentication; with `tls` it runs over TLS (`SASL_SSL`).
    #[serde(default)]
    pub sasl: Option<Sasl>,
    /// TLS to the brokers; present (even empty, `tls = {}`) means on.
    #[serde(default)]
    pub tls: Option<TlsOptions>,
    /// Any other librdkafka property, as strings, applied last. Properties that
    /// ferry sets from its own options or needs for its delivery guarantee are
    /// refused (the error names the option to use).
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sasl {
    pub mechanism: SaslMechanism,
    pub username: String,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsOptions {
    /// CA certificates (PEM) to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs `key_file`.
    pub crt_file: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS; needs `crt_file`.
    pub key_file: Option<PathBuf>,
    /// Password of an encrypted `key_file`.
    pub key_password: Option<Secret>,
    pub key_password_file: Option<PathBuf>,
    /// Check the broker's certificate chain. Turn off only for tests.
    pub verify_certificate: bool,
    /// Check that the certificate names the broker's host.
    pub verify_hostname: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            ca_file: None,
            crt_file: None,
            key_file: None,
            key_password: None,
            key_password_file: None,
            verify_certificate: true,
            verify_hostname: true,
        }
    }
}

/// librdkafka properties set from the client options themselves.
const CLIENT_MANAGED: &[(&str, &str)] = &[
    ("bootstrap.servers", "bootstrap_servers"),
    ("metadata.broker.list", "bootstrap_servers"),
    ("security.protocol", "sasl / tls"),
    ("sasl.mechanism", "sasl.mechanism"),
    ("sasl.mechanisms", "sasl.mechanism"),
    ("sasl.username", "sasl.username"),
    ("sasl.password", "sasl.password"),
    ("ssl.ca.location", "tls.ca_file"),
    ("ssl.certificate.location", "tls.crt_file"),
    ("ssl.key.location", "tls.key_file"),
    ("ssl.key.password", "tls.key_password"),
    (
        "enable.ssl.certificate.verification",
        "tls.verify_certificate",
    ),
    (
        "ssl.endpoint.identification.algorithm",
        "tls.verify_hostname",
    ),
];

impl KafkaClientOptions {
    /// The librdkafka config: the client options, then `settings` (what the
    /// component derives from its own options), then the passthrough. A passthrough
    /// key that the client options or `managed` (librdkafka key, ferry option) own
    /// is refused. Reads the secret files.
    pub fn client_config(
        &self,
        settings: &[(&str, String)],
        managed: &[(&str, &str)],
    ) -> Result<ClientConfig, String> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err("`bootstrap_servers` is empty; give at least one host:port".into());
        }
        for key in self.librdkafka_options.keys() {
            if let Some((_, option)) = CLIENT_MANAGED
                .iter()
                .chain(managed)
                .find(|(managed, _)| managed == key)
            {
                return Err(format!(
                    "librdkafka_options: `{key}` is set by ferry; use `{option}` instead"
                ));
            }
        }
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap_servers.trim());
        let protocol = match (&self.sasl, &self.tls) {
            (None, None) => "plaintext",
            (None, Some(_)) => "ssl",
            (Some(_), None) => "sasl_plaintext",
            (Some(_), Some(_)) => "sasl_ssl",
        };
        config.set("security.protocol", protocol);
        if let Some(sasl) = &self.sasl {
            let password = resolve_secret(
                "sasl.password",
                sasl.password.as_ref(),
                sasl.password_file.as_deref(),
            )?
            .ok_or("sasl: give `password` or `password_file`")?;
            config
                .set("sasl.mechanism", sasl.mechanism.as_str())
                .set("sasl.username", &sasl.username)
                .set("sasl.password", password.expose());
        }
        if let Some(tls) = &self.tls {
            tls.apply(&mut config)?;
        }
        for (key, value) in settings {
            config.set(*key, value);
        }
        for (key, value) in &self.librdkafka_options {
            config.set(key, value);
        }
        check_native(&config)?;
        Ok(config)
    }
}

impl TlsOptions {
    fn apply(&self, config: &mut ClientConfig) -> Result<(), String> {
        if self.crt_file.is_some() != self.key_file.is_some() {
            return Err("tls: give both `crt_file` and `key_file`, or neither".into());
        }
        for (key, path) in [
            ("ssl.ca.location", &self.ca_file),
            ("ssl.certificate.location", &self.crt_file),
            ("ssl.key.location", &self.key_file),
        ] {
            if let Some(path) = path {
                let text = path
                    .to_str()
                    .ok_or_else(|| format!("tls: path {} is not UTF-8", path.display()))?;
                config.set(key, text);
            }
        }
        if let Some(password) = resolve_secret(
            "tls.key_password",
            self.key_password.as_ref(),
            self.key_password_file.as_deref(),
        )? {
            config.set("ssl.key.password", password.expose());
        }
        config.set(
            "enable.ssl.certificate.verification",
            self.verify_certificate.to_string(),
        );
        config.set(
            "ssl.endpoint.identification.algorithm",
            if self.verify_hostname {
                "https"
            } else {
                "none"
            },
        );
        Ok(())
    }
}

/// Lets librdkafka check every property now (a bad name or value is a config error,
/// found by `ferry validate`), without connecting.
fn check_native(config: &ClientConfig) -> Result<(), String> {
    match config.create_native_config() {
        Ok(_) => Ok(()),
        Err(KafkaError::ClientConfig(_, _, key, _)) if is_sensitive(&key) => Err(format!(
            "librdkafka refuses the value of `{key}` (not shown: it is a secret)"
        )),
        Err(KafkaError::ClientConfig(_, description, key, _)) => {
            Err(format!("librdkafka refuses `{key}`: {description}"))
        }
        Err(other) => Err(format!("librdkafka refuses the configuration: {other}")),
    }
}

fn is_sensitive(key: &str) -> bool {
    ["password", "secret", "pem", "token", "jaas"]
        .iter()
        .any(|word| key.contains(word))
}

/// Logs librdkafka's client errors (a broker down, refused credentials) as warnings,
/// each distinct message at most once per `interval`, so an outage does not flood
/// the log while it lasts.
pub struct ClientLog {
    component: String,
    interval: Duration,
    last: Mutex<BTreeMap<String, Instant>>,
}

impl ClientLog {
    pub fn new(component: String) -> Self {
        ClientLog {
            component,
            interval: Duration::from_secs(30),
            last: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn error(&self, error: &KafkaError, reason: &str) {
        let message = format!("{error}: {reason}");
        let now = Instant::now();
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last
            .get(&message)
            .is_some_and(|at| now.duration_since(*at) < self.interval)
        {
            return;
        }
        if last.len() > 64 {
            last.clear();
        }
        last.insert(message.clone(), now);
        tracing::warn!(component = %self.component, "kafka: {message}");
    }
}

impl ClientContext for ClientLog {
    fn error(&self, error: KafkaError, reason: &str) {
        ClientLog::error(self, &error, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(toml_text: &str) -> KafkaClientOptions {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn security_protocol_follows_sasl_and_tls_and_secrets_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("pw");
        std::fs::write(&secret, "hunter2\n").unwrap();
        let plain = options("bootstrap_servers = \"b:9092\"")
            .client_config(&[], &[])
            .unwrap();
        assert_eq!(plain.get("security.protocol"), Some("plaintext"));
        let text = format!(
            "bootstrap_servers = \"b:9092\"\nsasl = {{ mechanism = \"SCRAM-SHA-512\", username = \"u\", password_file = \"{}\" }}\ntls = {{ verify_hostname = false }}",
            secret.display()
        );
        let config = options(&text).client_config(&[], &[]).unwrap();
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("sasl.password"), Some("hunter2"));
        assert_eq!(
            config.get("ssl.endpoint.identification.algorithm"),
            Some("none")
        );
        assert!(!format!("{:?}", options(&text)).contains("hunter2"));
    }

    #[test]
    fn passthrough_is_checked_and_cannot_take_over_managed_properties() {
        let config = options(
            "bootstrap_servers = \"b:9092\"\nlibrdkafka_options = { \"socket.keepalive.enable\" = \"true\" }",
        )
        .client_config(&[("client.id", "ferry".into())], &[])
        .unwrap();
        assert_eq!(config.get("socket.keepalive.enable"), Some("true"));
        assert_eq!(config.get("client.id"), Some("ferry"));
        let error = options(
            "bootstrap_servers = \"b:9092\"\nlibrdkafka_options = { \"enable.auto.commit\" = \"true\" }",
        )
        .client_config(&[], &[("enable.auto.commit", "commit_interval")])
        .unwrap_err();
        assert!(error.contains("commit_interval"), "{error}");
        let error = options(
            "bootstrap_servers = \"b:9092\"\nlibrdkafka_options = { \"no.such.property\" = \"1\" }",
        )
        .client_config(&[], &[])
        .unwrap_err();
        assert!(error.contains("no.such.property"), "{error}");
        assert!(is_sensitive("ssl.keystore.password") && !is_sensitive("acks"));
        let error = options(
            "bootstrap_servers = \"b:9092\"\nsasl = { mechanism = \"PLAIN\", username = \"u\" }",
        )
        .client_config(&[], &[])
        .unwrap_err();
        assert!(error.contains("password"), "{error}");
    }
}
