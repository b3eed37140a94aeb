//! The fixed-newstyle handshake: greet, then answer options until the client picks an export
//! (OPT_GO or OPT_EXPORT_NAME) or leaves. Options we do not implement get ERR_UNSUP and the
//! negotiation goes on, as the protocol asks. STARTTLS turns the connection into TLS and
//! forgets what was negotiated before; under `--nbd-tls require` nothing else is answered
//! until it has. What a client may see depends on the identity TLS proved (see `hosts`).

use super::backend::Backend;
use super::connection::Connection;
use super::discard;
use super::tls::TlsServer;
use super::wire::*;
use crate::server::host_io::{HostIoError, OpenVolume};
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
    pub export: OpenVolume,
    pub framing: Framing,
    /// `base:allocation` was selected for this export: block status requests are answered.
    pub allocation: bool,
}

impl<S> Negotiated<S> {
    /// `allocation_for`: the export `base:allocation` was selected for, if any.
    fn new(stream: Connection<S>, export: OpenVolume, framing: Framing, allocation_for: &Option<String>) -> Self {
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
pub fn transmission_flags(export: &OpenVolume, framing: Framing) -> u16 {
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
    let no_zeroes = greet(&mut stream).await?;
    let mut session = Session::new(stream, no_zeroes, None);
    loop {
        session = match session.next_option(backend, tls).await? {
            Step::More(session) => session,
            Step::Done(negotiated) => return Ok(negotiated),
        };
    }
}

/// Sends the greeting and reads the client's flags; returns whether the client asked for no
/// zeroes after the `OPT_EXPORT_NAME` reply.
async fn greet<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> Result<bool, HandshakeError> {
    let flags = FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES;
    stream.write_all(&greeting(flags)).await?;
    stream.flush().await?;
    let client_flags = stream.read_u32().await?;
    if client_flags & CLIENT_FIXED_NEWSTYLE == 0 {
        return Err(HandshakeError::NotFixedNewstyle(client_flags));
    }
    if client_flags & !(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES) != 0 {
        return Err(HandshakeError::UnknownClientFlags(client_flags));
    }
    Ok(client_flags & CLIENT_NO_ZEROES != 0)
}

/// Reads one option: its code and its data, `None` when it was too long to keep (then it was
/// discarded unread).
async fn read_option<R: AsyncRead + Unpin>(stream: &mut R) -> Result<(u32, Option<Vec<u8>>), HandshakeError> {
    let magic = stream.read_u64().await?;
    if magic != IHAVEOPT {
        return Err(HandshakeError::BadMagic(magic));
    }
    let option = stream.read_u32().await?;
    let length = stream.read_u32().await?;
    if length > MAX_DISCARD_LEN {
        return Err(HandshakeError::OptionTooLong { option, length });
    }
    if length > MAX_OPTION_LEN {
        discard(stream, u64::from(length)).await?;
        return Ok((option, None));
    }
    let mut data = vec![0u8; length as usize];
    stream.read_exact(&mut data).await?;
    Ok((option, Some(data)))
}

/// The answer to any option but STARTTLS and ABORT before TLS, when TLS is required.
async fn refuse_before_tls<W: AsyncWrite + Unpin>(stream: &mut W, option: u32) -> Result<(), HandshakeError> {
    if option == OPT_EXPORT_NAME {
        // This option cannot be refused: the protocol's answer is to hang up.
        return Err(HandshakeError::TlsRequired);
    }
    let message = "this server requires TLS: start it first (NBD_OPT_STARTTLS)";
    reply_error(stream, option, REP_ERR_TLS_REQD, message).await?;
    Ok(())
}

/// After one option: the negotiation goes on, or it is over.
enum Step<S> {
    More(Session<S>),
    Done(Option<Negotiated<S>>),
}

/// The connection, and what was negotiated on it so far (STARTTLS resets it).
struct Session<S> {
    stream: Connection<S>,
    /// The client asked for no zeroes after the `OPT_EXPORT_NAME` reply.
    no_zeroes: bool,
    /// The identity TLS proved, if any.
    identity: Option<HostIdentity>,
    framing: Framing,
    /// The export `base:allocation` was selected for, if any.
    allocation_for: Option<String>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    fn new(stream: Connection<S>, no_zeroes: bool, identity: Option<HostIdentity>) -> Self {
        Session {
            stream,
            no_zeroes,
            identity,
            framing: Framing::Simple,
            allocation_for: None,
        }
    }

    /// Reads the next option and answers it.
    async fn next_option<B: Backend>(mut self, backend: &B, tls: &TlsPolicy) -> Result<Step<S>, HandshakeError> {
        // What the last option was answered is on the wire before the next one is awaited.
        self.stream.flush().await?;
        let (option, data) = read_option(&mut self.stream).await?;
        // Before TLS, when it is required, nothing else is answered (not even the size).
        if tls.required && !self.stream.is_tls() && option != OPT_STARTTLS && option != OPT_ABORT {
            refuse_before_tls(&mut self.stream, option).await?;
            return Ok(Step::More(self));
        }
        let Some(data) = data else {
            reply_error(&mut self.stream, option, REP_ERR_TOO_BIG, "option data too long").await?;
            return Ok(Step::More(self));
        };
        self.answer(backend, tls, option, &data).await
    }

    /// Answers one option, by what it is.
    async fn answer<B: Backend>(
        mut self,
        backend: &B,
        tls: &TlsPolicy,
        option: u32,
        data: &[u8],
    ) -> Result<Step<S>, HandshakeError> {
        let chosen = match option {
            OPT_STARTTLS => return Ok(Step::More(self.start_tls(tls, data).await?)),
            OPT_ABORT => {
                self.abort().await;
                return Ok(Step::Done(None));
            }
            OPT_EXPORT_NAME => Some(self.export_name(backend, data).await?),
            OPT_LIST => {
                self.list(backend, data).await?;
                None
            }
            OPT_STRUCTURED_REPLY | OPT_EXTENDED_HEADERS => {
                self.choose_framing(option, data).await?;
                None
            }
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                self.meta_context(backend, option, data).await?;
                None
            }
            OPT_INFO => {
                self.describe(backend, option, data).await?;
                None
            }
            OPT_GO => self.describe(backend, option, data).await?,
            _ => {
                let message = "option not supported by this server";
                reply_error(&mut self.stream, option, REP_ERR_UNSUP, message).await?;
                None
            }
        };
        Ok(match chosen {
            Some(export) => Step::Done(Some(self.chose(export))),
            None => Step::More(self),
        })
    }

    /// The transmission phase starts on `export`.
    fn chose(self, export: OpenVolume) -> Negotiated<S> {
        Negotiated::new(self.stream, export, self.framing, &self.allocation_for)
    }

    /// OPT_STARTTLS: acknowledged, then the TLS handshake; nothing negotiated in the clear
    /// carries over.
    async fn start_tls(mut self, tls: &TlsPolicy, data: &[u8]) -> Result<Self, HandshakeError> {
        let refusal = if !data.is_empty() {
            Some((REP_ERR_INVALID, "OPT_STARTTLS takes no data"))
        } else if self.stream.is_tls() {
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
            reply_error(&mut self.stream, OPT_STARTTLS, reply, message).await?;
            return Ok(self);
        }
        self.stream.write_all(&option_ack(OPT_STARTTLS)).await?;
        self.stream.flush().await?;
        let server = tls.server.as_ref().expect("checked");
        let no_zeroes = self.no_zeroes;
        let Connection::Plain(plain) = self.stream else {
            unreachable!("checked: not TLS yet")
        };
        let (encrypted, proved) = server.accept(plain).await.map_err(HandshakeError::Tls)?;
        Ok(Session::new(Connection::Tls(Box::new(encrypted)), no_zeroes, proved))
    }

    /// OPT_ABORT: acknowledged, and the negotiation ends.
    async fn abort(&mut self) {
        // The client may already have closed: a failed ACK changes nothing.
        let _ = self.stream.write_all(&option_ack(OPT_ABORT)).await;
        let _ = self.stream.flush().await;
    }

    /// OPT_EXPORT_NAME: the export named, whose size and flags are sent. This option has no
    /// way to say "no": the protocol's answer is to hang up.
    async fn export_name<B: Backend>(&mut self, backend: &B, data: &[u8]) -> Result<OpenVolume, HandshakeError> {
        let name = String::from_utf8_lossy(data).into_owned();
        let export = find(backend, self.identity.as_ref(), &name)
            .await
            .map_err(|e| HandshakeError::Unavailable(e.to_string()))?
            .ok_or(HandshakeError::UnknownExport(name))?;
        let flags = transmission_flags(&export, self.framing);
        let reply = export_name_reply(export.size, flags, self.no_zeroes);
        self.stream.write_all(&reply).await?;
        self.stream.flush().await?;
        Ok(export)
    }

    /// OPT_LIST: one `REP_SERVER` per export this client may see, then the ACK.
    async fn list<B: Backend>(&mut self, backend: &B, data: &[u8]) -> std::io::Result<()> {
        if !data.is_empty() {
            return reply_error(&mut self.stream, OPT_LIST, REP_ERR_INVALID, "OPT_LIST takes no data").await;
        }
        match backend.exports(self.identity.as_ref()).await {
            Ok(exports) => {
                let mut out = Vec::new();
                for export in exports {
                    out.extend(server_reply(OPT_LIST, &export.name));
                }
                out.extend(option_ack(OPT_LIST));
                self.stream.write_all(&out).await
            }
            Err(e) => unavailable(&mut self.stream, OPT_LIST, e).await,
        }
    }

    /// OPT_STRUCTURED_REPLY and OPT_EXTENDED_HEADERS: how replies are framed from now on.
    async fn choose_framing(&mut self, option: u32, data: &[u8]) -> std::io::Result<()> {
        if !data.is_empty() {
            return reply_error(&mut self.stream, option, REP_ERR_INVALID, "this option takes no data").await;
        }
        if option == OPT_STRUCTURED_REPLY && self.framing == Framing::Extended {
            let message = "extended headers are negotiated, and include structured replies";
            return reply_error(&mut self.stream, option, REP_ERR_EXT_HEADER_REQD, message).await;
        }
        self.framing = if option == OPT_EXTENDED_HEADERS {
            Framing::Extended
        } else {
            Framing::Structured
        };
        self.stream.write_all(&option_ack(option)).await
    }

    /// OPT_LIST_META_CONTEXT and OPT_SET_META_CONTEXT: `base:allocation` is the one context
    /// served; SET selects it for one export.
    async fn meta_context<B: Backend>(&mut self, backend: &B, option: u32, data: &[u8]) -> std::io::Result<()> {
        let set = option == OPT_SET_META_CONTEXT;
        if set {
            // A SET replaces what was selected, also when it fails.
            self.allocation_for = None;
        }
        let Some((name, queries)) = parse_meta_context_request(data) else {
            let message = "malformed meta context request";
            return reply_error(&mut self.stream, option, REP_ERR_INVALID, message).await;
        };
        if self.framing == Framing::Simple {
            let message = "negotiate structured replies or extended headers first";
            return reply_error(&mut self.stream, option, REP_ERR_INVALID, message).await;
        }
        let wanted = if set {
            queries.iter().any(|q| q == BASE_ALLOCATION)
        } else {
            queries.is_empty() || queries.iter().any(|q| q == "base:" || q == BASE_ALLOCATION)
        };
        if set && wanted {
            if find_or_refuse(&mut self.stream, backend, self.identity.as_ref(), option, &name)
                .await?
                .is_none()
            {
                return Ok(());
            }
            self.allocation_for = Some(name);
        }
        let mut out = Vec::new();
        if wanted {
            let id = if set { BASE_ALLOCATION_ID } else { 0 };
            out.extend(meta_context_reply(option, id, BASE_ALLOCATION));
        }
        out.extend(option_ack(option));
        self.stream.write_all(&out).await
    }

    /// OPT_INFO and OPT_GO: the export's information replies, then the ACK; returns the export
    /// when it was found (for OPT_GO, the one chosen).
    async fn describe<B: Backend>(
        &mut self,
        backend: &B,
        option: u32,
        data: &[u8],
    ) -> std::io::Result<Option<OpenVolume>> {
        let Some((name, requests)) = parse_info_request(data) else {
            let message = "malformed OPT_INFO/OPT_GO data";
            reply_error(&mut self.stream, option, REP_ERR_INVALID, message).await?;
            return Ok(None);
        };
        let found = find_or_refuse(&mut self.stream, backend, self.identity.as_ref(), option, &name).await?;
        let Some(export) = found else {
            return Ok(None);
        };
        self.stream
            .write_all(&info_replies(option, &export, self.framing, &requests))
            .await?;
        self.stream.flush().await?;
        Ok(Some(export))
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
) -> std::io::Result<Option<OpenVolume>>
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

async fn find<B: Backend>(
    backend: &B,
    client: Option<&HostIdentity>,
    name: &str,
) -> Result<Option<OpenVolume>, HostIoError> {
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

/// The information replies to OPT_INFO/OPT_GO: always the size and flags, then what was
/// requested and is known, then the ACK.
fn info_replies(option: u32, export: &OpenVolume, framing: Framing, requests: &[u16]) -> Vec<u8> {
    let mut out = info_export(option, export.size, transmission_flags(export, framing));
    for request in requests {
        match *request {
            INFO_NAME => out.extend(info_name(option, &export.name)),
            INFO_DESCRIPTION => out.extend(info_description(option, &format!("flashcopy volume {}", export.name))),
            // Any byte range works; whole 64 KiB tracks avoid read-modify-write.
            INFO_BLOCK_SIZE => out.extend(info_block_size(option, 1, TRACK_SIZE, MAX_WRITE_BYTES as u32)),
            _ => {}
        }
    }
    out.extend(option_ack(option));
    out
}

async fn reply_error<S: AsyncWrite + Unpin>(
    stream: &mut S,
    option: u32,
    reply: u32,
    message: &str,
) -> std::io::Result<()> {
    stream.write_all(&option_error(option, reply, message)).await
}

/// The cluster could not answer: a node that lost leadership tells the client to go elsewhere.
async fn unavailable<S: AsyncWrite + Unpin>(stream: &mut S, option: u32, failure: HostIoError) -> std::io::Result<()> {
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
