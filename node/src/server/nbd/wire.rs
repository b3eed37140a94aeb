//! NBD wire constants and the fixed-size frames of the protocol (`doc/proto.md` of the
//! NetworkBlockDevice/nbd repository). Encoding only: no I/O, no policy.

pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const EXTENDED_REQUEST_MAGIC: u32 = 0x21e4_1c71;
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;
pub const EXTENDED_REPLY_MAGIC: u32 = 0x6e8a_278c;

// Handshake flags (server) and client flags.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
pub const CLIENT_FIXED_NEWSTYLE: u32 = 1 << 0;
pub const CLIENT_NO_ZEROES: u32 = 1 << 1;

// Options.
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_STARTTLS: u32 = 5;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;
pub const OPT_STRUCTURED_REPLY: u32 = 8;
pub const OPT_LIST_META_CONTEXT: u32 = 9;
pub const OPT_SET_META_CONTEXT: u32 = 10;
pub const OPT_EXTENDED_HEADERS: u32 = 11;

// Option reply types.
pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
pub const REP_META_CONTEXT: u32 = 4;
const REP_ERR: u32 = 1 << 31;
pub const REP_ERR_UNSUP: u32 = REP_ERR | 1;
pub const REP_ERR_POLICY: u32 = REP_ERR | 2;
pub const REP_ERR_INVALID: u32 = REP_ERR | 3;
pub const REP_ERR_TLS_REQD: u32 = REP_ERR | 5;
pub const REP_ERR_UNKNOWN: u32 = REP_ERR | 6;
pub const REP_ERR_SHUTDOWN: u32 = REP_ERR | 7;
pub const REP_ERR_TOO_BIG: u32 = REP_ERR | 9;
pub const REP_ERR_EXT_HEADER_REQD: u32 = REP_ERR | 10;

// Info types (in OPT_INFO / OPT_GO).
pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_DESCRIPTION: u16 = 2;
pub const INFO_BLOCK_SIZE: u16 = 3;

// Transmission flags.
pub const TFLAG_HAS_FLAGS: u16 = 1 << 0;
pub const TFLAG_READ_ONLY: u16 = 1 << 1;
pub const TFLAG_SEND_FLUSH: u16 = 1 << 2;
pub const TFLAG_SEND_FUA: u16 = 1 << 3;
pub const TFLAG_SEND_TRIM: u16 = 1 << 5;
pub const TFLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
pub const TFLAG_SEND_DF: u16 = 1 << 7;
pub const TFLAG_CAN_MULTI_CONN: u16 = 1 << 8;
pub const TFLAG_SEND_FAST_ZERO: u16 = 1 << 11;

// Command flags.
pub const CMD_FLAG_FUA: u16 = 1 << 0;
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;
pub const CMD_FLAG_DF: u16 = 1 << 2;
pub const CMD_FLAG_REQ_ONE: u16 = 1 << 3;
pub const CMD_FLAG_FAST_ZERO: u16 = 1 << 4;
pub const CMD_FLAG_PAYLOAD_LEN: u16 = 1 << 5;

// Structured reply chunk types and flags.
pub const REPLY_FLAG_DONE: u16 = 1 << 0;
pub const REPLY_TYPE_NONE: u16 = 0;
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
pub const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
pub const REPLY_TYPE_BLOCK_STATUS_EXT: u16 = 6;
pub const REPLY_TYPE_ERROR: u16 = (1 << 15) | 1;

/// The one metadata context served, and the id it is selected under.
pub const BASE_ALLOCATION: &str = "base:allocation";
pub const BASE_ALLOCATION_ID: u32 = 1;
// `base:allocation` extent flags.
pub const STATE_HOLE: u32 = 1 << 0;
pub const STATE_ZERO: u32 = 1 << 1;

// Errors (errno values fixed by the protocol).
pub const EPERM: u32 = 1;
pub const EIO: u32 = 5;
pub const EINVAL: u32 = 22;
pub const ENOSPC: u32 = 28;
pub const ENOTSUP: u32 = 95;
pub const ESHUTDOWN: u32 = 108;

/// Longest export name the protocol allows.
pub const MAX_NAME: usize = 4096;

/// The transmission-phase commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommandKind {
    Read,
    Write,
    Disc,
    Flush,
    Trim,
    Cache,
    WriteZeroes,
    BlockStatus,
    Resize,
    Other(u16),
}

impl CommandKind {
    pub fn from_wire(value: u16) -> CommandKind {
        match value {
            0 => CommandKind::Read,
            1 => CommandKind::Write,
            2 => CommandKind::Disc,
            3 => CommandKind::Flush,
            4 => CommandKind::Trim,
            5 => CommandKind::Cache,
            6 => CommandKind::WriteZeroes,
            7 => CommandKind::BlockStatus,
            8 => CommandKind::Resize,
            other => CommandKind::Other(other),
        }
    }

    /// A short name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            CommandKind::Read => "read",
            CommandKind::Write => "write",
            CommandKind::Disc => "disc",
            CommandKind::Flush => "flush",
            CommandKind::Trim => "trim",
            CommandKind::Cache => "cache",
            CommandKind::WriteZeroes => "write_zeroes",
            CommandKind::BlockStatus => "block_status",
            CommandKind::Resize => "resize",
            CommandKind::Other(_) => "other",
        }
    }
}

/// A transmission request header: 28 bytes, or 32 with extended headers (64-bit length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub flags: u16,
    pub kind: CommandKind,
    pub cookie: u64,
    pub offset: u64,
    /// Bytes the request covers; with extended headers and `CMD_FLAG_PAYLOAD_LEN`, the length
    /// of the payload that follows.
    pub length: u64,
}

pub const REQUEST_LEN: usize = 28;
pub const EXTENDED_REQUEST_LEN: usize = 32;

impl Request {
    /// Parses a compact (28 bytes) or extended (32 bytes) header, as `bytes.len()` says; `None`
    /// when the magic is wrong (the stream cannot be trusted after that).
    pub fn parse(bytes: &[u8]) -> Option<Request> {
        let u16_at = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_be_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let length = match (bytes.len(), u32_at(0)) {
            (REQUEST_LEN, REQUEST_MAGIC) => u64::from(u32_at(24)),
            (EXTENDED_REQUEST_LEN, EXTENDED_REQUEST_MAGIC) => u64_at(24),
            _ => return None,
        };
        Some(Request {
            flags: u16_at(4),
            kind: CommandKind::from_wire(u16_at(6)),
            cookie: u64_at(8),
            offset: u64_at(16),
            length,
        })
    }
}

/// How replies are framed on a connection, as negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// 16-byte simple replies only.
    Simple,
    /// `NBD_OPT_STRUCTURED_REPLY`: 20-byte chunk headers.
    Structured,
    /// `NBD_OPT_EXTENDED_HEADERS`: 32-byte requests and chunk headers.
    Extended,
}

impl Framing {
    pub fn request_len(self) -> usize {
        match self {
            Framing::Extended => EXTENDED_REQUEST_LEN,
            _ => REQUEST_LEN,
        }
    }
}

/// A reply chunk header (structured or extended framing) for `request`, with `payload` bytes
/// to follow.
pub fn chunk_header(framing: Framing, request: &Request, flags: u16, kind: u16, payload: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    let magic = if framing == Framing::Extended {
        EXTENDED_REPLY_MAGIC
    } else {
        STRUCTURED_REPLY_MAGIC
    };
    out.extend_from_slice(&magic.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&request.cookie.to_be_bytes());
    if framing == Framing::Extended {
        out.extend_from_slice(&request.offset.to_be_bytes());
        out.extend_from_slice(&(payload as u64).to_be_bytes());
    } else {
        out.extend_from_slice(&(payload as u32).to_be_bytes());
    }
    out
}

/// The reply header to a successful request, read data excluded: a simple reply, a final
/// `NONE` chunk, or (for reads under structured framing) the header of one final `OFFSET_DATA`
/// chunk whose `data_len` bytes follow.
pub fn success_header(framing: Framing, request: &Request, data_len: usize) -> Vec<u8> {
    match framing {
        Framing::Simple => simple_reply(0, request.cookie).to_vec(),
        _ if request.kind == CommandKind::Read => {
            let mut out = chunk_header(framing, request, REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, 8 + data_len);
            out.extend_from_slice(&request.offset.to_be_bytes());
            out
        }
        _ => chunk_header(framing, request, REPLY_FLAG_DONE, REPLY_TYPE_NONE, 0),
    }
}

/// The reply to a failed request: a simple reply, or a final `ERROR` chunk carrying the reason
/// (clients show it).
pub fn error_reply(framing: Framing, request: &Request, errno: u32, message: &str) -> Vec<u8> {
    if framing == Framing::Simple {
        return simple_reply(errno, request.cookie).to_vec();
    }
    let mut end = message.len().min(4096);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let message = &message.as_bytes()[..end];
    let mut out = chunk_header(framing, request, REPLY_FLAG_DONE, REPLY_TYPE_ERROR, 6 + message.len());
    out.extend_from_slice(&errno.to_be_bytes());
    out.extend_from_slice(&(message.len() as u16).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// A final block-status chunk for the `base:allocation` context: `(length, flags)` extents,
/// 32-bit descriptors under structured framing, 64-bit under extended.
pub fn block_status_reply(framing: Framing, request: &Request, extents: &[(u64, u32)]) -> Vec<u8> {
    let mut payload = BASE_ALLOCATION_ID.to_be_bytes().to_vec();
    let kind = if framing == Framing::Extended {
        payload.extend_from_slice(&(extents.len() as u32).to_be_bytes());
        for (length, flags) in extents {
            payload.extend_from_slice(&length.to_be_bytes());
            payload.extend_from_slice(&u64::from(*flags).to_be_bytes());
        }
        REPLY_TYPE_BLOCK_STATUS_EXT
    } else {
        for (length, flags) in extents {
            // Requests are 32-bit here, and extents never run past the request.
            payload.extend_from_slice(&(*length as u32).to_be_bytes());
            payload.extend_from_slice(&flags.to_be_bytes());
        }
        REPLY_TYPE_BLOCK_STATUS
    };
    let mut out = chunk_header(framing, request, REPLY_FLAG_DONE, kind, payload.len());
    out.extend(payload);
    out
}

/// A simple reply header; read data follows it when `error` is 0.
pub fn simple_reply(error: u32, cookie: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&error.to_be_bytes());
    out[8..16].copy_from_slice(&cookie.to_be_bytes());
    out
}

/// An option reply: header plus payload.
pub fn option_reply(option: u32, reply: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + payload.len());
    out.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&reply.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The server's greeting: `NBDMAGIC`, `IHAVEOPT`, the handshake flags.
pub fn greeting(flags: u16) -> [u8; 18] {
    let mut out = [0u8; 18];
    out[0..8].copy_from_slice(&NBDMAGIC.to_be_bytes());
    out[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    out[16..18].copy_from_slice(&flags.to_be_bytes());
    out
}

/// `REP_ACK`: the option succeeded (and, for a list, this was the last reply).
pub fn option_ack(option: u32) -> Vec<u8> {
    option_reply(option, REP_ACK, &[])
}

/// An error reply (`reply` is one of the `REP_ERR_*`), the message as its payload.
pub fn option_error(option: u32, reply: u32, message: &str) -> Vec<u8> {
    option_reply(option, reply, message.as_bytes())
}

/// `REP_SERVER`: one export of an `OPT_LIST` answer, its name as length and bytes.
pub fn server_reply(option: u32, name: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(4 + name.len());
    payload.extend_from_slice(&(name.len() as u32).to_be_bytes());
    payload.extend_from_slice(name.as_bytes());
    option_reply(option, REP_SERVER, &payload)
}

/// `REP_META_CONTEXT`: a metadata context's id (0 when only listed) and name.
pub fn meta_context_reply(option: u32, id: u32, name: &str) -> Vec<u8> {
    let mut payload = id.to_be_bytes().to_vec();
    payload.extend_from_slice(name.as_bytes());
    option_reply(option, REP_META_CONTEXT, &payload)
}

/// `REP_INFO` carrying `INFO_EXPORT`: the export's size and transmission flags.
pub fn info_export(option: u32, size: u64, flags: u16) -> Vec<u8> {
    let mut payload = INFO_EXPORT.to_be_bytes().to_vec();
    payload.extend_from_slice(&size.to_be_bytes());
    payload.extend_from_slice(&flags.to_be_bytes());
    option_reply(option, REP_INFO, &payload)
}

/// `REP_INFO` carrying `INFO_NAME`: the export's name.
pub fn info_name(option: u32, name: &str) -> Vec<u8> {
    let mut payload = INFO_NAME.to_be_bytes().to_vec();
    payload.extend_from_slice(name.as_bytes());
    option_reply(option, REP_INFO, &payload)
}

/// `REP_INFO` carrying `INFO_DESCRIPTION`: a description of the export for people.
pub fn info_description(option: u32, description: &str) -> Vec<u8> {
    let mut payload = INFO_DESCRIPTION.to_be_bytes().to_vec();
    payload.extend_from_slice(description.as_bytes());
    option_reply(option, REP_INFO, &payload)
}

/// `REP_INFO` carrying `INFO_BLOCK_SIZE`: the minimum, preferred and maximum block sizes.
pub fn info_block_size(option: u32, minimum: u32, preferred: u32, maximum: u32) -> Vec<u8> {
    let mut payload = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
    payload.extend_from_slice(&minimum.to_be_bytes());
    payload.extend_from_slice(&preferred.to_be_bytes());
    payload.extend_from_slice(&maximum.to_be_bytes());
    option_reply(option, REP_INFO, &payload)
}

/// Zero bytes after the `OPT_EXPORT_NAME` reply, unless the client asked for none.
const EXPORT_NAME_ZEROES: usize = 124;

/// The answer to `OPT_EXPORT_NAME` (not an option reply: the protocol's oldest form): size and
/// transmission flags, then the zeroes unless the client set `CLIENT_NO_ZEROES`.
pub fn export_name_reply(size: u64, flags: u16, no_zeroes: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + EXPORT_NAME_ZEROES);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    if !no_zeroes {
        out.extend_from_slice(&[0u8; EXPORT_NAME_ZEROES]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip_and_bad_magic() {
        let mut raw = [0u8; REQUEST_LEN];
        raw[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        raw[4..6].copy_from_slice(&CMD_FLAG_FUA.to_be_bytes());
        raw[6..8].copy_from_slice(&1u16.to_be_bytes());
        raw[8..16].copy_from_slice(&7u64.to_be_bytes());
        raw[16..24].copy_from_slice(&4096u64.to_be_bytes());
        raw[24..28].copy_from_slice(&512u32.to_be_bytes());
        let r = Request::parse(&raw).expect("valid header");
        assert_eq!(
            (r.flags, r.kind, r.cookie, r.offset, r.length),
            (CMD_FLAG_FUA, CommandKind::Write, 7, 4096, 512)
        );
        raw[0] ^= 1;
        assert_eq!(Request::parse(&raw), None);
    }

    #[test]
    fn replies_have_the_documented_layout() {
        let reply = simple_reply(EINVAL, 9);
        assert_eq!(&reply[0..4], &[0x67, 0x44, 0x66, 0x98]);
        assert_eq!(u32::from_be_bytes(reply[4..8].try_into().unwrap()), 22);
        let opt = option_reply(OPT_GO, REP_ACK, &[]);
        assert_eq!(opt.len(), 20);
        assert_eq!(&opt[0..8], &OPTION_REPLY_MAGIC.to_be_bytes());
    }

    #[test]
    fn handshake_replies_have_the_documented_layout() {
        let hello = greeting(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
        assert_eq!(&hello[0..16], b"NBDMAGICIHAVEOPT");
        assert_eq!(&hello[16..18], &[0, 3]);
        assert_eq!(export_name_reply(1 << 20, TFLAG_HAS_FLAGS, true).len(), 10);
        let zeroes = export_name_reply(1 << 20, TFLAG_HAS_FLAGS, false);
        assert_eq!(zeroes.len(), 134);
        assert_eq!(&zeroes[0..10], &[0, 0, 0, 0, 0, 0x10, 0, 0, 0, 1]);
        let server = server_reply(OPT_LIST, "vol");
        assert_eq!(&server[12..20], &[0, 0, 0, 2, 0, 0, 0, 7]);
        assert_eq!(&server[20..], &[0, 0, 0, 3, b'v', b'o', b'l']);
        let export = info_export(OPT_GO, 512, TFLAG_HAS_FLAGS);
        assert_eq!(&export[16..20], &12u32.to_be_bytes());
        assert_eq!(&export[20..], &[0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 1]);
        assert_eq!(info_block_size(OPT_GO, 1, 2, 3).len(), 20 + 14);
        let context = meta_context_reply(OPT_SET_META_CONTEXT, BASE_ALLOCATION_ID, BASE_ALLOCATION);
        assert_eq!(&context[12..16], &REP_META_CONTEXT.to_be_bytes());
        assert_eq!(&context[20..24], &[0, 0, 0, 1]);
        assert_eq!(&context[24..], BASE_ALLOCATION.as_bytes());
        assert_eq!(&option_error(OPT_GO, REP_ERR_UNKNOWN, "no")[20..], b"no");
    }
}
