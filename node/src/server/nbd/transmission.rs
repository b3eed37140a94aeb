//! The transmission phase of one connection: requests are read in order and run concurrently
//! (pipelined), replies go out as they complete, framed as negotiated (simple, structured or
//! extended). A bad request gets an error reply and the connection goes on; only a broken
//! stream (bad magic, an oversized payload, I/O error) ends it.

use super::backend::Backend;
use super::discard;
use super::handshake::Negotiated;
use super::wire::*;
use crate::server::consensus::ProposeError;
use crate::server::host_io::{HostIoError, OpenVolume, ALLOCATION_BUDGET};
use crate::server::metrics::Metrics;
use statemachine::{CommandError, Extent, WriteData, MAX_WRITE_BYTES};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Bytes of request and reply data one connection may hold in memory at once, in KiB.
pub const CONNECTION_BUDGET_KIB: u32 = 96 * 1024;

/// The memory a connection may hold: its own budget, within the node's budget for all
/// connections. Permits are held from reading a request until its reply is on the socket.
pub struct Budget {
    connection: Arc<Semaphore>,
    node: Arc<Semaphore>,
}

impl Budget {
    pub fn new(node: Arc<Semaphore>) -> Self {
        Budget {
            connection: Arc::new(Semaphore::new(CONNECTION_BUDGET_KIB as usize)),
            node,
        }
    }

    /// Waits for `kib` of both budgets: this connection's first, so one connection waiting
    /// for the node's budget holds none of it.
    async fn take(&self, kib: u32) -> Held {
        let connection = self
            .connection
            .clone()
            .acquire_many_owned(kib)
            .await
            .expect("never closed");
        let node = self.node.clone().acquire_many_owned(kib).await.expect("never closed");
        Held {
            _connection: connection,
            _node: node,
        }
    }

    /// Waits until every permit of this connection has come back.
    async fn drained(&self) {
        let _all = self.connection.acquire_many(CONNECTION_BUDGET_KIB).await;
    }
}

/// Memory held for one request, released when dropped.
struct Held {
    _connection: OwnedSemaphorePermit,
    _node: OwnedSemaphorePermit,
}

#[derive(Debug, thiserror::Error)]
pub enum TransmissionError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad request magic: the stream is out of step, hanging up")]
    BadMagic,
    #[error("a request carries a payload of {0} bytes, more than the {MAX_WRITE_BYTES} advertised: hanging up")]
    PayloadTooLarge(u64),
}

struct Reply {
    header: Vec<u8>,
    data: Vec<u8>,
    /// Dropped once the reply is written: until then its bytes count against the budgets.
    _held: Held,
}

/// Serves requests until the client disconnects, or this node stops leading (then in-flight
/// requests finish, and the client is told ESHUTDOWN so it reconnects elsewhere).
pub async fn serve<S, B>(
    negotiated: Negotiated<S>,
    backend: Arc<B>,
    metrics: Arc<Metrics>,
    budget: Budget,
) -> Result<(), TransmissionError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: Backend,
{
    let Negotiated {
        stream,
        export,
        framing,
        allocation,
    } = negotiated;
    let session = Arc::new(Session {
        export,
        framing,
        allocation,
    });
    let (mut reader, writer) = tokio::io::split(stream);
    // Unbounded, but never longer than the budget allows: every reply holds budget permits
    // until it is written.
    let (replies, reply_queue) = mpsc::unbounded_channel::<Reply>();
    let step_down = Arc::new(Notify::new());
    let writer = tokio::spawn(write_replies(writer, reply_queue, step_down.clone()));

    let result = loop {
        let mut raw = [0u8; EXTENDED_REQUEST_LEN];
        let raw = &mut raw[..framing.request_len()];
        tokio::select! {
            read = reader.read_exact(raw) => match read {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break Ok(()),
                Err(e) => break Err(e.into()),
            },
            _ = step_down.notified() => break Ok(()),
        }
        let Some(request) = Request::parse(raw) else {
            break Err(TransmissionError::BadMagic);
        };
        if request.kind == CommandKind::Disc {
            break Ok(());
        }
        // Writes carry their payload (with extended headers qemu does not set PAYLOAD_LEN on
        // them); other commands only when the flag says so.
        let payload_len = match framing {
            _ if request.kind == CommandKind::Write => request.length,
            Framing::Extended if request.flags & CMD_FLAG_PAYLOAD_LEN != 0 => request.length,
            _ => 0,
        };
        if framing == Framing::Extended && payload_len > MAX_WRITE_BYTES {
            break Err(TransmissionError::PayloadTooLarge(payload_len));
        }
        // What the request holds in memory until its reply is written: its data, or the
        // largest block-status reply.
        let data_len = match request.kind {
            CommandKind::Write | CommandKind::Read => request.length.min(MAX_WRITE_BYTES),
            CommandKind::BlockStatus => BLOCK_STATUS_REPLY_MAX,
            _ => 0,
        };
        let held = budget.take(((data_len / 1024) as u32).max(1)).await;

        let mut payload = Vec::new();
        if payload_len > 0 {
            // Only a write's payload is used (and counted above): any other is dropped unread.
            if payload_len > MAX_WRITE_BYTES || request.kind != CommandKind::Write {
                if let Err(e) = discard(&mut reader, payload_len).await {
                    break Err(e.into());
                }
            } else {
                payload = vec![0u8; payload_len as usize];
                if let Err(e) = reader.read_exact(&mut payload).await {
                    break Err(e.into());
                }
            }
        }

        let backend = backend.clone();
        let metrics = metrics.clone();
        let replies = replies.clone();
        let session = session.clone();
        let step_down = step_down.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let outcome = execute(&*backend, &session, &request, payload_len, payload).await;
            let command = metrics.nbd(request.kind.name());
            command.latency.observe(started.elapsed());
            let (header, data) = match outcome {
                Ok(answer) => {
                    command
                        .bytes
                        .fetch_add(request.length, std::sync::atomic::Ordering::Relaxed);
                    match answer {
                        Answer::Done => (success_header(session.framing, &request, 0), Vec::new()),
                        Answer::Data(data) => (success_header(session.framing, &request, data.len()), data),
                        Answer::Extents(extents) => {
                            (block_status_reply(session.framing, &request, &extents), Vec::new())
                        }
                    }
                }
                Err(Refusal { errno, why }) => {
                    command.errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!(
                        command = request.kind.name(),
                        offset = request.offset,
                        length = request.length,
                        errno,
                        %why,
                        "NBD request refused"
                    );
                    if errno == ESHUTDOWN {
                        step_down.notify_one();
                    }
                    (error_reply(session.framing, &request, errno, &why), Vec::new())
                }
            };
            let _ = replies.send(Reply {
                header,
                data,
                _held: held,
            });
        });
    };

    // Let every request already read finish and be answered before closing.
    drop(replies);
    budget.drained().await;
    let _ = writer.await;
    result
}

/// The largest block-status reply: two extents per stored track looked at, 16 bytes each.
const BLOCK_STATUS_REPLY_MAX: u64 = (2 * ALLOCATION_BUDGET as u64 + 2) * 16;

/// What the connection was negotiated to: the export, the reply framing, block status.
struct Session {
    export: OpenVolume,
    framing: Framing,
    allocation: bool,
}

/// A successful request's answer.
enum Answer {
    Done,
    Data(Vec<u8>),
    /// `base:allocation` extents: (length, flags).
    Extents(Vec<(u64, u32)>),
}

/// Why a request failed, as the errno the client sees.
struct Refusal {
    errno: u32,
    why: String,
}

fn refuse(errno: u32, why: impl Into<String>) -> Refusal {
    Refusal { errno, why: why.into() }
}

async fn execute<B: Backend>(
    backend: &B,
    session: &Session,
    r: &Request,
    payload_len: u64,
    payload: Vec<u8>,
) -> Result<Answer, Refusal> {
    let export = &session.export;
    let writes = matches!(
        r.kind,
        CommandKind::Write | CommandKind::WriteZeroes | CommandKind::Trim
    );
    let extended = session.framing == Framing::Extended;
    let allowed_flags = CMD_FLAG_FUA
        | match r.kind {
            CommandKind::Write if extended => CMD_FLAG_PAYLOAD_LEN,
            CommandKind::WriteZeroes => CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO,
            CommandKind::Read if session.framing != Framing::Simple => CMD_FLAG_DF,
            CommandKind::BlockStatus => CMD_FLAG_REQ_ONE,
            _ => 0,
        };
    if r.flags & !allowed_flags != 0 {
        return Err(refuse(EINVAL, format!("flags {:#x} are not valid here", r.flags)));
    }
    if writes && export.read_only {
        return Err(refuse(
            EPERM,
            "the export is read-only (mapped read-only, or a --tgtinhibit target)",
        ));
    }
    match r.kind {
        // Offset and length of a flush are reserved, and must be zero.
        CommandKind::Flush if r.offset != 0 || r.length != 0 => {
            return Err(refuse(EINVAL, "a flush must have offset 0 and length 0"))
        }
        CommandKind::Flush => return Ok(Answer::Done),
        CommandKind::BlockStatus if !session.allocation => {
            return Err(refuse(
                EINVAL,
                "no metadata context selected: set base:allocation first",
            ))
        }
        CommandKind::Read
        | CommandKind::Write
        | CommandKind::WriteZeroes
        | CommandKind::Trim
        | CommandKind::BlockStatus => {}
        other => return Err(refuse(EINVAL, format!("command {} is not supported", other.name()))),
    }
    let length = if r.kind == CommandKind::Write {
        payload_len
    } else {
        r.length
    };
    // A zero-length request is host I/O's to refuse (`HostIoError::Empty`), as for the admin API.
    if r.offset.checked_add(length).is_none_or(|end| end > export.size) {
        let errno = if writes { ENOSPC } else { EINVAL };
        return Err(refuse(errno, "beyond the end of the volume"));
    }
    if matches!(r.kind, CommandKind::Read | CommandKind::Write) && length > MAX_WRITE_BYTES {
        return Err(refuse(EINVAL, "larger than the advertised maximum block size"));
    }
    if r.flags & CMD_FLAG_FAST_ZERO != 0 && !backend.zeroing_is_fast(export) {
        // Zeroing a source may copy its tracks to targets first: not faster than writing.
        return Err(refuse(
            ENOTSUP,
            "zeroing this volume may copy data to its FlashCopy targets",
        ));
    }
    // FUA needs nothing more: a write is acknowledged only once committed on a majority.
    let result = match r.kind {
        CommandKind::Read => {
            return backend
                .read(export, r.offset, length)
                .await
                .map(Answer::Data)
                .map_err(failure)
        }
        CommandKind::BlockStatus => {
            let extents = backend.allocation(export, r.offset, length).await.map_err(failure)?;
            let take = if r.flags & CMD_FLAG_REQ_ONE != 0 {
                1
            } else {
                extents.len()
            };
            return Ok(Answer::Extents(extents.iter().take(take).map(extent_flags).collect()));
        }
        CommandKind::Write => backend.write(export, r.offset, WriteData::Bytes(payload.into())).await,
        // Trimmed space reads back as zeroes and stays thin.
        _ => backend.write(export, r.offset, WriteData::Zeroes(length)).await,
    };
    result.map(|()| Answer::Done).map_err(failure)
}

/// An extent as `base:allocation` reports it: a hole reads as zeros.
fn extent_flags(extent: &Extent) -> (u64, u32) {
    let flags = if extent.allocated { 0 } else { STATE_HOLE | STATE_ZERO };
    (extent.length, flags)
}

fn failure(f: HostIoError) -> Refusal {
    let errno = match &f {
        HostIoError::Refused(
            CommandError::TargetWriteInhibited { .. } | CommandError::RevertibleWriteInhibited { .. },
        )
        | HostIoError::Denied(_) => EPERM,
        HostIoError::Refused(CommandError::OutOfRange { .. } | CommandError::WriteTooLarge { .. })
        | HostIoError::Empty => EINVAL,
        // The client must reconnect: to the leader, or to the majority's side (a commit that
        // takes this long means this leader is cut off, or the cluster is stuck).
        HostIoError::Propose(
            ProposeError::NotLeader { .. } | ProposeError::NoQuorum(_) | ProposeError::CommitTimeout,
        ) => ESHUTDOWN,
        HostIoError::DiskFull(_) => ENOSPC,
        HostIoError::Refused(_) | HostIoError::Propose(ProposeError::Unavailable(_)) | HostIoError::Unavailable(_) => {
            EIO
        }
    };
    refuse(errno, f.to_string())
}

/// How long a client may leave a reply unread before it is disconnected: a client that sends
/// but does not read would otherwise hold its share of the node's memory budget for ever.
const REPLY_WAIT: Duration = Duration::from_secs(30);

/// Writes replies as they come; on a broken or stalled client it tells the reading side to
/// stop (`hang_up`) and drops what is left, releasing its budget.
async fn write_replies<W: AsyncWrite + Unpin>(
    writer: W,
    mut queue: mpsc::UnboundedReceiver<Reply>,
    hang_up: Arc<Notify>,
) {
    let mut writer = BufWriter::with_capacity(256 * 1024, writer);
    while let Some(reply) = queue.recv().await {
        let mut next = Some(reply);
        // Write everything ready, then flush once.
        let written = tokio::time::timeout(REPLY_WAIT, async {
            while let Some(reply) = next.take() {
                writer.write_all(&reply.header).await?;
                writer.write_all(&reply.data).await?;
                next = queue.try_recv().ok();
            }
            writer.flush().await
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            hang_up.notify_one();
            return;
        }
    }
    let _ = writer.shutdown().await;
}
