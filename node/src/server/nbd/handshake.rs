//! The fixed-newstyle handshake: greet, then answer options until the client picks an export
//! (OPT_GO or OPT_EXPORT_NAME) or leaves. Options we do not implement get ERR_UNSUP and the
//! negotiation goes on, as the protocol asks. STARTTLS turns the connection into TLS and
//! forgets what was negotiated before; under `--nbd-tls require` nothing else is answered
//! until it has. What a client may see depends on the identity TLS proved (see `hosts`).

use super::backend::{Backend, Export, Failure};
use super::connection::Connection;
use super::discard;
use super::tls::TlsServer;
use super::wire::*;
use statemachine::{HostIdentity, MAX_WRITE_BYTES, TRACK_SIZE};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Option payloads larger than this are discarded unread and answered with ERR_TOO_BIG.
const MAX_OPTION_LEN: u32 = 16 * 1024;
/// A client that sends more than this in one option is not an NBD client: hang up.
const MAX_DISCARD_LEN: u32 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("the client does not speak fixed newstyle (client flags {0:#x})")]
    NotFixedNewstyle(u32),
    #[error("the client sent unknown flags {0:#x}")]
    UnknownClientFlags(u32),
    #[error("bad option magic {0:#x}")]
    BadMagic(u64),
    #[error("option {option} carries {length} bytes; hanging up")]
    OptionTooLong { option: u32, length: u32 },
    #[error("the client asked for export {0:?}, which does not exist or is not mapped to it")]
    UnknownExport(String),
    #[error("the client chose an export without TLS, which this server requires (--nbd-tls require)")]
    TlsRequired,
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("the cluster cannot answer: {0}")]
    Unavailable(String),
}

/// The TLS side of the handshake: the credentials, and whether TLS is required.
#[derive(Clone, Debug, Default)]
pub struct TlsPolicy {
    pub server: Option<Arc<TlsServer>>,
    pub required: bool,
}

/// What the client chose: the export, and how the transmission phase talks.
pub struct Negotiated<S> {
    pub stream: Connection<S>,
    pub export: Export,
    pub framing: Framing,
    /// `base:allocation` was selected for this export: block status requests are answered.
    pub allocation: bool,
}

impl<S> Negotiated<S> {
    /// `allocation_for`: the export `base:allocation` was selected for, if any.
    fn new(stream: Connection<S>, export: Export, framing: Framing, allocation_for: &Option<String>) -> Self {
        let allocation = allocation_for.as_deref() == Some(export.name.as_str());
        Negotiated {
            stream,
            export,
            framing,
            allocation,
        }
    }
}

/// The transmission flags of an export. `CAN_MULTI_CONN` holds: a write is acknowledged only
/// once committed, so every acknowledged write on any connection is already as durable as a
/// flush could make it. Reads are always answered in one chunk, so `DF` holds once chunks are.
pub fn transmission_flags(export: &Export, framing: Framing) -> u16 {
    let mut flags = TFLAG_HAS_FLAGS
        | TFLAG_SEND_FLUSH
        | TFLAG_SEND_FUA
        | TFLAG_CAN_MULTI_CONN
        | TFLAG_SEND_TRIM
        | TFLAG_SEND_WRITE_ZEROES
        | TFLAG_SEND_FAST_ZERO;
    if framing != Framing::Simple {
        flags |= TFLAG_SEND_DF;
    }
    if export.read_only {
        flags |= TFLAG_READ_ONLY;
    }
    flags
}

/// Returns what the client chose, or `None` when it ended the negotiation.
pub async fn negotiate<S, B>(stream: S, backend: &B, tls: &TlsPolicy) -> Result<Option<Negotiated<S>>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    B: Backend,
{
    let mut stream = Connection::Plain(stream);
    let mut greeting = Vec::with_capacity(18);
    greeting.extend_from_slice(&NBDMAGIC.to_be_bytes());
    greeting.extend_from_slice(&IHAVEOPT.to_be_bytes());
    greeting.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    stream.write_all(&greeting).await?;
    stream.flush().await?;

    let client_flags = stream.read_u32().await?;
    if client_flags & CLIENT_FIXED_NEWSTYLE == 0 {
        return Err(HandshakeError::NotFixedNewstyle(client_flags));
    }
    if client_flags & !(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES) != 0 {
        return Err(HandshakeError::UnknownClientFlags(client_flags));
    }
    let no_zeroes = client_flags & CLIENT_NO_ZEROES != 0;
    // What was negotiated so far (STARTTLS resets it).
    let mut identity: Option<HostIdentity> = None;
    let mut framing = Framing::Simple;
    let mut allocation_for: Option<String> = None;

    loop {
        // What the last option was answered is on the wire before the next one is awaited.
        stream.flush().await?;
        let magic = stream.read_u64().await?;
        if magic != IHAVEOPT {
            return Err(HandshakeError::BadMagic(magic));
        }
        let option = stream.read_u32().await?;
        let length = stream.read_u32().await?;
        if length > MAX_DISCARD_LEN {
            return Err(HandshakeError::OptionTooLong { option, length });
        }
        let too_big = length > MAX_OPTION_LEN;
        let mut data = Vec::new();
        if too_big {
            discard(&mut stream, u64::from(length)).await?;
        } else {
            data = vec![0u8; length as usize];
            stream.read_exact(&mut data).await?;
        }

        // Before TLS, when it is required, nothing else is answered (not even the size).
        if tls.required && !stream.is_tls() && option != OPT_STARTTLS && option != OPT_ABORT {
            if option == OPT_EXPORT_NAME {
                // This option cannot be refused: the protocol's answer is to hang up.
                return Err(HandshakeError::TlsRequired);
            }
            let message = "this server requires TLS: start it first (NBD_OPT_STARTTLS)";
            reply_error(&mut stream, option, REP_ERR_TLS_REQD, message).await?;
            continue;
        }
        if too_big {
            reply_error(&mut stream, option, REP_ERR_TOO_BIG, "option data too long").await?;
            continue;
        }

        match option {
            OPT_STARTTLS => {
                let refusal = if !data.is_empty() {
                    Some((REP_ERR_INVALID, "OPT_STARTTLS takes no data"))
                } else if stream.is_tls() {
                    Some((REP_ERR_INVALID, "TLS is already on"))
                } else if tls.server.is_none() {
                    Some((
                        REP_ERR_POLICY,
                        "this server has no TLS credentials (--nbd-tls-cert, --nbd-tls-psk)",
                    ))
                } else {
                    None
                };
                if let Some((reply, message)) = refusal {
                    reply_error(&mut stream, option, reply, message).await?;
                } else {
                    stream.write_all(&option_reply(option, REP_ACK, &[])).await?;
                    stream.flush().await?;
                    let server = tls.server.as_ref().expect("checked");
                    let Connection::Plain(plain) = stream else {
                        unreachable!("checked: not TLS yet")
                    };
                    let (encrypted, proved) = server.accept(plain).await.map_err(HandshakeError::Tls)?;
                    stream = Connection::Tls(Box::new(encrypted));
                    // Nothing negotiated in the clear carries over.
                    identity = proved;
                    framing = Framing::Simple;
                    allocation_for = None;
                }
            }
            OPT_EXPORT_NAME => {
                let name = String::from_utf8_lossy(&data).into_owned();
                // This option has no way to say "no": the protocol's answer is to hang up.
                let export = find(backend, identity.as_ref(), &name)
                    .await
                    .map_err(|e| HandshakeError::Unavailable(e.to_string()))?
                    .ok_or(HandshakeError::UnknownExport(name))?;
                let mut reply = Vec::with_capacity(10 + 124);
                reply.extend_from_slice(&export.size.to_be_bytes());
                reply.extend_from_slice(&transmission_flags(&export, framing).to_be_bytes());
                if !no_zeroes {
                    reply.extend_from_slice(&[0u8; 124]);
                }
                stream.write_all(&reply).await?;
                stream.flush().await?;
                return Ok(Some(Negotiated::new(stream, export, framing, &allocation_for)));
            }
            OPT_ABORT => {
                // The client may already have closed: a failed ACK changes nothing.
                let _ = stream.write_all(&option_reply(option, REP_ACK, &[])).await;
                let _ = stream.flush().await;
                return Ok(None);
            }
            OPT_LIST => {
                if !data.is_empty() {
                    reply_error(&mut stream, option, REP_ERR_INVALID, "OPT_LIST takes no data").await?;
                    continue;
                }
                match backend.exports(identity.as_ref()).await {
                    Ok(exports) => {
                        let mut out = Vec::new();
                        for export in exports {
                            let mut payload = Vec::with_capacity(4 + export.name.len());
                            payload.extend_from_slice(&(export.name.len() as u32).to_be_bytes());
                            payload.extend_from_slice(export.name.as_bytes());
                            out.extend(option_reply(option, REP_SERVER, &payload));
                        }
                        out.extend(option_reply(option, REP_ACK, &[]));
                        stream.write_all(&out).await?;
                    }
                    Err(e) => unavailable(&mut stream, option, e).await?,
                }
            }
            OPT_STRUCTURED_REPLY | OPT_EXTENDED_HEADERS => {
                if !data.is_empty() {
                    reply_error(&mut stream, option, REP_ERR_INVALID, "this option takes no data").await?;
                } else if option == OPT_STRUCTURED_REPLY && framing == Framing::Extended {
                    let message = "extended headers are negotiated, and include structured replies";
                    reply_error(&mut stream, option, REP_ERR_EXT_HEADER_REQD, message).await?;
                } else {
                    framing = if option == OPT_EXTENDED_HEADERS {
                        Framing::Extended
                    } else {
                        Framing::Structured
                    };
                    stream.write_all(&option_reply(option, REP_ACK, &[])).await?;
                }
            }
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                let set = option == OPT_SET_META_CONTEXT;
                if set {
                    // A SET replaces what was selected, also when it fails.
                    allocation_for = None;
                }
                let Some((name, queries)) = parse_meta_context_request(&data) else {
                    reply_error(&mut stream, option, REP_ERR_INVALID, "malformed meta context request").await?;
                    continue;
                };
                if framing == Framing::Simple {
                    let message = "negotiate structured replies or extended headers first";
                    reply_error(&mut stream, option, REP_ERR_INVALID, message).await?;
                    continue;
                }
                let wanted = if set {
                    queries.iter().any(|q| q == BASE_ALLOCATION)
                } else {
                    queries.is_empty() || queries.iter().any(|q| q == "base:" || q == BASE_ALLOCATION)
                };
                if set && wanted {
                    if find_or_refuse(&mut stream, backend, identity.as_ref(), option, &name)
                        .await?
                        .is_none()
                    {
                        continue;
                    }
                    allocation_for = Some(name);
                }
                let mut out = Vec::new();
                if wanted {
                    let id = if set { BASE_ALLOCATION_ID } else { 0 };
                    let mut payload = id.to_be_bytes().to_vec();
                    payload.extend_from_slice(BASE_ALLOCATION.as_bytes());
                    out.extend(option_reply(option, REP_META_CONTEXT, &payload));
                }
                out.extend(option_reply(option, REP_ACK, &[]));
                stream.write_all(&out).await?;
            }
            OPT_INFO | OPT_GO => {
                let Some((name, requests)) = parse_info_request(&data) else {
                    reply_error(&mut stream, option, REP_ERR_INVALID, "malformed OPT_INFO/OPT_GO data").await?;
                    continue;
                };
                let Some(export) = find_or_refuse(&mut stream, backend, identity.as_ref(), option, &name).await? else {
                    continue;
                };
                stream
                    .write_all(&info_replies(option, &export, framing, &requests))
                    .await?;
                stream.flush().await?;
                if option == OPT_GO {
                    return Ok(Some(Negotiated::new(stream, export, framing, &allocation_for)));
                }
            }
            _ => {
                reply_error(
                    &mut stream,
                    option,
                    REP_ERR_UNSUP,
                    "option not supported by this server",
                )
                .await?;
            }
        }
    }
}

/// The export `name` as this client may see it; when there is none (or the cluster cannot
/// answer), the option is refused and `None` returned.
async fn find_or_refuse<S, B>(
    stream: &mut S,
    backend: &B,
    client: Option<&HostIdentity>,
    option: u32,
    name: &str,
) -> std::io::Result<Option<Export>>
where
    S: AsyncWrite + Unpin,
    B: Backend,
{
    match find(backend, client, name).await {
        Ok(Some(export)) => Ok(Some(export)),
        Ok(None) => {
            reply_error(stream, option, REP_ERR_UNKNOWN, &no_such_export(name)).await?;
            Ok(None)
        }
        Err(e) => {
            unavailable(stream, option, e).await?;
            Ok(None)
        }
    }
}

fn no_such_export(name: &str) -> String {
    if name.is_empty() {
        "there is no default export: name a volume ('nbdinfo --list' lists them)".to_string()
    } else {
        format!("there is no volume named \"{name}\" for this client ('nbdinfo --list' lists them)")
    }
}

async fn find<B: Backend>(backend: &B, client: Option<&HostIdentity>, name: &str) -> Result<Option<Export>, Failure> {
    Ok(backend.exports(client).await?.into_iter().find(|e| e.name == name))
}

/// Parses LIST/SET_META_CONTEXT data: export name length, name, count of queries, each query
/// as length and string.
fn parse_meta_context_request(data: &[u8]) -> Option<(String, Vec<String>)> {
    let u32_at = |at: usize| Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?) as usize);
    let name_len = u32_at(0)?;
    if name_len > MAX_NAME {
        return None;
    }
    let name = std::str::from_utf8(data.get(4..4 + name_len)?).ok()?.to_string();
    let mut at = 4 + name_len;
    let count = u32_at(at)?;
    at += 4;
    let mut queries = Vec::new();
    for _ in 0..count {
        let len = u32_at(at)?;
        let query = std::str::from_utf8(data.get(at + 4..(at + 4).checked_add(len)?)?).ok()?;
        queries.push(query.to_string());
        at += 4 + len;
    }
    (at == data.len()).then_some((name, queries))
}

/// Parses OPT_INFO/OPT_GO data: name length, name, count of info requests, the requests.
fn parse_info_request(data: &[u8]) -> Option<(String, Vec<u16>)> {
    let name_len = u32::from_be_bytes(data.get(0..4)?.try_into().ok()?) as usize;
    if name_len > MAX_NAME {
        return None;
    }
    let name = std::str::from_utf8(data.get(4..4 + name_len)?).ok()?.to_string();
    let rest = &data[4 + name_len..];
    let count = u16::from_be_bytes(rest.get(0..2)?.try_into().ok()?) as usize;
    let requests = rest.get(2..)?;
    if requests.len() != count * 2 {
        return None;
    }
    let requests = requests
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    Some((name, requests))
}

fn info_replies(option: u32, export: &Export, framing: Framing, requests: &[u16]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut info = |payload: Vec<u8>| out.extend(option_reply(option, REP_INFO, &payload));
    let mut payload = INFO_EXPORT.to_be_bytes().to_vec();
    payload.extend_from_slice(&export.size.to_be_bytes());
    payload.extend_from_slice(&transmission_flags(export, framing).to_be_bytes());
    info(payload);
    for request in requests {
        match *request {
            INFO_NAME => {
                let mut payload = INFO_NAME.to_be_bytes().to_vec();
                payload.extend_from_slice(export.name.as_bytes());
                info(payload);
            }
            INFO_DESCRIPTION => {
                let mut payload = INFO_DESCRIPTION.to_be_bytes().to_vec();
                payload.extend_from_slice(format!("flashcopy volume {}", export.name).as_bytes());
                info(payload);
            }
            INFO_BLOCK_SIZE => {
                // Any byte range works; whole 64 KiB tracks avoid read-modify-write.
                let mut payload = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
                payload.extend_from_slice(&1u32.to_be_bytes());
                payload.extend_from_slice(&TRACK_SIZE.to_be_bytes());
                payload.extend_from_slice(&(MAX_WRITE_BYTES as u32).to_be_bytes());
                info(payload);
            }
            _ => {}
        }
    }
    out.extend(option_reply(option, REP_ACK, &[]));
    out
}

async fn reply_error<S: AsyncWrite + Unpin>(
    stream: &mut S,
    option: u32,
    reply: u32,
    message: &str,
) -> std::io::Result<()> {
    stream.write_all(&option_reply(option, reply, message.as_bytes())).await
}

/// The cluster could not answer: a node that lost leadership tells the client to go elsewhere.
async fn unavailable<S: AsyncWrite + Unpin>(stream: &mut S, option: u32, failure: Failure) -> std::io::Result<()> {
    reply_error(stream, option, REP_ERR_SHUTDOWN, &failure.to_string()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_request_parsing_checks_every_length() {
        let mut data = 3u32.to_be_bytes().to_vec();
        data.extend_from_slice(b"vol");
        data.extend_from_slice(&2u16.to_be_bytes());
        data.extend_from_slice(&INFO_NAME.to_be_bytes());
        data.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        assert_eq!(
            parse_info_request(&data),
            Some(("vol".to_string(), vec![INFO_NAME, INFO_BLOCK_SIZE]))
        );
        assert_eq!(parse_info_request(&data[..data.len() - 1]), None);
        let mut long = data.clone();
        long.push(0);
        assert_eq!(parse_info_request(&long), None);
        assert_eq!(parse_info_request(&[0, 0, 0, 9, b'x']), None);
    }

    #[test]
    fn meta_context_request_parsing_checks_every_length() {
        let mut data = 3u32.to_be_bytes().to_vec();
        data.extend_from_slice(b"vol");
        data.extend_from_slice(&2u32.to_be_bytes());
        for query in ["base:allocation", "qemu:dirty-bitmap:x"] {
            data.extend_from_slice(&(query.len() as u32).to_be_bytes());
            data.extend_from_slice(query.as_bytes());
        }
        assert_eq!(
            parse_meta_context_request(&data),
            Some((
                "vol".to_string(),
                vec!["base:allocation".to_string(), "qemu:dirty-bitmap:x".to_string()]
            ))
        );
        assert_eq!(parse_meta_context_request(&data[..data.len() - 1]), None);
        let mut long = data.clone();
        long.push(0);
        assert_eq!(parse_meta_context_request(&long), None);
        let mut huge = 3u32.to_be_bytes().to_vec();
        huge.extend_from_slice(b"vol");
        huge.extend_from_slice(&1u32.to_be_bytes());
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(parse_meta_context_request(&huge), None);
    }
}
