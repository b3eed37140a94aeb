//! TLS for NBD (`NBD_OPT_STARTTLS`), as qemu-nbd and nbdkit offer it: x509 certificates, with
//! client certificates verified against a CA when one is given, and TLS-PSK with keys in the
//! psktool format (`identity:hexkey` per line). The identity a client proves — its PSK
//! identity or its certificate's common name — decides which volumes it sees (see `hosts`).
//!
//! OpenSSL, not rustls: rustls has no external (non-resumption) PSK, and qemu, libnbd and
//! nbdkit clients speak TLS-PSK (through GnuTLS).

use openssl::nid::Nid;
use openssl::ssl::{Ssl, SslContext, SslContextBuilder, SslFiletype, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::X509Name;
use statemachine::HostIdentity;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::OnceLock;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_openssl::SslStream;

/// Whether a client must start TLS before anything else (`--nbd-tls`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsMode {
    /// Every option but STARTTLS (and ABORT) is refused with `NBD_REP_ERR_TLS_REQD`.
    Require,
    /// Plain NBD is served; STARTTLS is still offered when credentials are given.
    Off,
}

/// Where the credentials come from (`--nbd-tls-*`).
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub psk: Option<PathBuf>,
}

/// Why the TLS options cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("--nbd-tls require needs credentials: give --nbd-tls-cert and --nbd-tls-key, or --nbd-tls-psk")]
    NoCredentials,
    #[error("--nbd-tls-cert and --nbd-tls-key go together: give both")]
    CertWithoutKey,
    #[error("--nbd-tls-ca verifies client certificates: it needs --nbd-tls-cert and --nbd-tls-key too")]
    CaWithoutCert,
    #[error("--nbd-tls-{option} {path}: {reason}")]
    File {
        option: &'static str,
        path: String,
        reason: String,
    },
    #[error("OpenSSL cannot set up the TLS context: {0}")]
    Setup(#[from] openssl::error::ErrorStack),
    #[error("--nbd-tls-psk {path} line {line}: {reason} (the psktool format is IDENTITY:HEXKEY, one per line)")]
    PskLine { path: String, line: usize, reason: String },
}

/// The server side of NBD TLS: an OpenSSL context built once at start.
pub struct TlsServer {
    context: SslContext,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsServer")
    }
}

/// Longest PSK OpenSSL accepts (`PSK_MAX_PSK_LEN`).
const MAX_PSK_LEN: usize = 512;

/// Where the PSK callback leaves the identity a client proved.
fn psk_identity_index() -> openssl::ex_data::Index<Ssl, String> {
    static INDEX: OnceLock<openssl::ex_data::Index<Ssl, String>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().expect("OpenSSL allocates an ex_data index"))
}

fn file_error(option: &'static str, path: &Path, reason: impl std::fmt::Display) -> TlsConfigError {
    TlsConfigError::File {
        option,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Reads a psktool key file: `identity:hexkey` lines (blank lines and `#` comments skipped).
pub fn read_psk_file(path: &Path) -> Result<HashMap<String, Vec<u8>>, TlsConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| file_error("psk", path, e))?;
    let mut keys = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: &str| TlsConfigError::PskLine {
            path: path.display().to_string(),
            line: i + 1,
            reason: reason.to_string(),
        };
        let (identity, hex) = line
            .split_once(':')
            .ok_or_else(|| bad("no ':' between identity and key"))?;
        if identity.is_empty() {
            return Err(bad("the identity is empty"));
        }
        if hex.is_empty() || hex.len() % 2 != 0 || hex.len() > 2 * MAX_PSK_LEN {
            return Err(bad("the key must be an even number of hex digits, at most 1024"));
        }
        let key = (0..hex.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&hex[at..at + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| bad("the key is not hexadecimal"))?;
        if keys.insert(identity.to_string(), key).is_some() {
            return Err(bad(&format!("identity {identity} appears twice")));
        }
    }
    if keys.is_empty() {
        return Err(file_error("psk", path, "holds no keys"));
    }
    Ok(keys)
}

impl TlsServer {
    /// Builds the server context from the files, or `None` when no TLS is configured (then
    /// `--nbd-tls require` is an error).
    pub fn from_files(mode: TlsMode, files: &TlsFiles) -> Result<Option<TlsServer>, TlsConfigError> {
        if files.cert.is_some() != files.key.is_some() {
            return Err(TlsConfigError::CertWithoutKey);
        }
        if files.ca.is_some() && files.cert.is_none() {
            return Err(TlsConfigError::CaWithoutCert);
        }
        if files.cert.is_none() && files.psk.is_none() {
            return match mode {
                TlsMode::Require => Err(TlsConfigError::NoCredentials),
                TlsMode::Off => Ok(None),
            };
        }
        fn openssl<'a>(
            option: &'static str,
            path: &'a Path,
        ) -> impl Fn(openssl::error::ErrorStack) -> TlsConfigError + 'a {
            move |e| file_error(option, path, e)
        }
        let mut builder = SslContextBuilder::new(SslMethod::tls_server())?;
        builder.set_min_proto_version(Some(SslVersion::TLS1_2))?;
        builder.set_cipher_list("HIGH:!aNULL:!MD5:!RC4:!3DES")?;
        // Nothing is resumed: no session tickets to send after the handshake.
        let _ = builder.set_num_tickets(0);
        // OpenSSL takes a TLS 1.3 PSK from the PSK callback as a SHA-256 one, and GnuTLS
        // clients (qemu, libnbd) ask for SHA-384 suites first: with the server's order, a
        // SHA-256 suite is chosen and the PSK used instead of the certificate.
        builder.set_ciphersuites("TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384")?;
        builder.set_options(openssl::ssl::SslOptions::CIPHER_SERVER_PREFERENCE);
        // A TLS 1.3 PSK is handled as a session: OpenSSL wants a context for it when client
        // certificates are verified.
        builder.set_session_id_context(b"flashcopy-nbd")?;
        if let (Some(cert), Some(key)) = (&files.cert, &files.key) {
            builder
                .set_certificate_chain_file(cert)
                .map_err(openssl("cert", cert))?;
            builder
                .set_private_key_file(key, SslFiletype::PEM)
                .map_err(openssl("key", key))?;
            builder
                .check_private_key()
                .map_err(|_| file_error("key", key, "does not match the certificate in --nbd-tls-cert"))?;
        }
        if let Some(ca) = &files.ca {
            builder.set_ca_file(ca).map_err(openssl("ca", ca))?;
            builder.set_client_ca_list(X509Name::load_client_ca_file(ca).map_err(openssl("ca", ca))?);
            // A certificate client must present one the CA signed; PSK handshakes ask for none.
            builder.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
        }
        if let Some(path) = &files.psk {
            let keys = read_psk_file(path)?;
            builder.set_psk_server_callback(move |ssl, identity, out| {
                let Some(identity) = identity.and_then(|i| std::str::from_utf8(i).ok()) else {
                    return Ok(0);
                };
                match keys.get(identity) {
                    Some(key) if key.len() <= out.len() => {
                        out[..key.len()].copy_from_slice(key);
                        ssl.set_ex_data(psk_identity_index(), identity.to_string());
                        Ok(key.len())
                    }
                    // An unknown identity: 0 fails the handshake.
                    _ => Ok(0),
                }
            });
        }
        Ok(Some(TlsServer {
            context: builder.build(),
        }))
    }

    /// Runs the TLS handshake on a connection that just acknowledged STARTTLS.
    pub async fn accept<S>(&self, stream: S) -> Result<(SslStream<S>, Option<HostIdentity>), String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let ssl = Ssl::new(&self.context).map_err(|e| e.to_string())?;
        let mut tls = SslStream::new(ssl, stream).map_err(|e| e.to_string())?;
        Pin::new(&mut tls).accept().await.map_err(|e| e.to_string())?;
        let ssl = tls.ssl();
        // The PSK callback names an identity before OpenSSL has checked anything, and TLS 1.3
        // may still drop that PSK (for a suite of another hash, say) and go on with a
        // certificate handshake: the identity counts only if the handshake used the PSK.
        let used_psk = ssl.session_reused() || ssl.current_cipher().is_some_and(|c| c.name().contains("PSK"));
        let identity = match ssl.ex_data(psk_identity_index()).filter(|_| used_psk) {
            Some(psk) => Some(HostIdentity::Psk(psk.clone())),
            None => ssl.peer_certificate().and_then(|cert| {
                cert.subject_name()
                    .entries_by_nid(Nid::COMMONNAME)
                    .next()
                    .and_then(|cn| cn.data().to_string().ok())
                    .map(HostIdentity::CertCn)
            }),
        };
        Ok((tls, identity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::ssl::SslConnector;

    /// A self-signed server certificate and its key, as PEM files.
    fn server_files(dir: &Path) -> (PathBuf, PathBuf) {
        use openssl::asn1::Asn1Time;
        use openssl::bn::BigNum;
        use openssl::ec::{EcGroup, EcKey};
        use openssl::hash::MessageDigest;
        use openssl::pkey::PKey;
        use openssl::x509::{X509NameBuilder, X509};
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "localhost").unwrap();
        let name = name.build();
        let mut cert = X509::builder().unwrap();
        cert.set_version(2).unwrap();
        cert.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
            .unwrap();
        cert.set_subject_name(&name).unwrap();
        cert.set_issuer_name(&name).unwrap();
        cert.set_pubkey(&key).unwrap();
        cert.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        cert.set_not_after(&Asn1Time::days_from_now(1).unwrap()).unwrap();
        cert.sign(&key, MessageDigest::sha256()).unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.build().to_pem().unwrap()).unwrap();
        std::fs::write(&key_path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        (cert_path, key_path)
    }

    /// A client that names PSK identity `alice` with a key it does not know, offering only a
    /// SHA-384 suite (so TLS 1.3 drops the PSK) and accepting any server certificate.
    async fn claim_alice(server: &TlsServer, suites: &str) -> Result<Option<HostIdentity>, String> {
        let mut connector = SslConnector::builder(SslMethod::tls_client()).unwrap();
        connector.set_verify(SslVerifyMode::NONE);
        connector.set_ciphersuites(suites).unwrap();
        connector.set_psk_client_callback(|_, _, identity, key| {
            identity[..6].copy_from_slice(b"alice\0");
            key[..4].copy_from_slice(&[9, 9, 9, 9]);
            Ok(4)
        });
        let connector = connector.build();
        let (client_end, server_end) = tokio::io::duplex(64 * 1024);
        let client = tokio::spawn(async move {
            let ssl = connector.configure().unwrap().into_ssl("localhost").unwrap();
            let mut tls = SslStream::new(ssl, client_end).unwrap();
            let connected = Pin::new(&mut tls).connect().await;
            // Keep the stream open until the server is done with it.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            connected.is_ok()
        });
        let accepted = server.accept(server_end).await.map(|(_, identity)| identity);
        let _ = client.await;
        accepted
    }

    #[tokio::test]
    async fn a_psk_identity_counts_only_when_the_handshake_used_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = server_files(dir.path());
        let psk = dir.path().join("keys.psk");
        std::fs::write(&psk, "alice:00112233\n").unwrap();
        let files = TlsFiles {
            cert: Some(cert),
            key: Some(key),
            ca: None,
            psk: Some(psk),
        };
        let server = TlsServer::from_files(TlsMode::Require, &files).unwrap().unwrap();
        // The PSK is dropped and the certificate handshake goes on: no identity is proved.
        let claimed = claim_alice(&server, "TLS_AES_256_GCM_SHA384").await;
        assert!(
            !matches!(claimed, Ok(Some(HostIdentity::Psk(_)))),
            "a client without the key was taken for alice: {claimed:?}"
        );
        // Where the PSK is used, a wrong key fails the handshake.
        assert!(claim_alice(&server, "TLS_AES_128_GCM_SHA256").await.is_err());
    }

    #[test]
    fn psk_files_are_read_in_the_psktool_format_and_bad_lines_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.psk");
        std::fs::write(&path, "# hosts\nalice:00ff10\n\nbob:0a0b\n").unwrap();
        let keys = read_psk_file(&path).unwrap();
        assert_eq!(keys["alice"], vec![0x00, 0xff, 0x10]);
        assert_eq!(keys["bob"], vec![0x0a, 0x0b]);
        for (text, line) in [
            ("alice:0g\n", 1),
            ("ok:00\nnocolon\n", 2),
            ("a:001\n", 1),
            (":00\n", 1),
            ("a:00\na:01\n", 2),
        ] {
            std::fs::write(&path, text).unwrap();
            match read_psk_file(&path) {
                Err(TlsConfigError::PskLine { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        std::fs::write(&path, "\n").unwrap();
        assert!(read_psk_file(&path).is_err());
    }
}
