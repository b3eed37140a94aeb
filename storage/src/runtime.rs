//! Where the node's asynchronous work runs, as one seam a deterministic simulation can take
//! over: openraft's runtime (tokio, with the election-timeout randomness drawn from a seed when
//! one is set), [`offload`] for blocking work (RocksDB, files), and the node's other
//! randomness (where snapshot ids start, a new cluster's id).
//!
//! A simulation runs every simulated node on one thread, with virtual time: a thread of tokio's
//! blocking pool would finish at a moment no seed decides, and an election timeout drawn from
//! the operating system's entropy would differ from run to run. So, on a thread that asked for
//! it ([`simulate_on_this_thread`]), blocking work runs inline, and election timeouts, the
//! start of snapshot ids and every other random number ([`random_u64`]) come from a seeded
//! generator. Production never asks: it keeps tokio's blocking pool and real entropy.

use openraft::{AsyncRuntime, OptionalSend, TokioRuntime};
use rand::{RngCore, SeedableRng};
use std::cell::Cell;
use std::future::Future;
use std::io::SeekFrom;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

thread_local! {
    /// The next seed for an election-timeout generator, while this thread simulates.
    static SIMULATED: Cell<Option<u64>> = const { Cell::new(None) };
}

/// From now on this thread runs blocking work inline and draws election timeouts from `seed`
/// (each `Raft::new` draws once, in the order the simulation starts nodes).
pub fn simulate_on_this_thread(seed: u64) {
    SIMULATED.set(Some(seed));
}

/// Ends [`simulate_on_this_thread`] (a test thread that runs several simulations).
pub fn stop_simulating_on_this_thread() {
    SIMULATED.set(None);
}

pub(crate) fn simulating() -> bool {
    SIMULATED.get().is_some()
}

/// Runs blocking work off the async workers (tokio's blocking pool), or inline while this
/// thread simulates. The error is a panic in `f` (only from the pool: inline, it unwinds).
pub async fn offload<T, F>(f: F) -> Result<T, tokio::task::JoinError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if simulating() {
        return Ok(f());
    }
    tokio::task::spawn_blocking(f).await
}

/// Where a node's sequence of snapshot ids starts, so no id repeats across restarts: the
/// wall clock in microseconds, or while this thread simulates, a number drawn from its seed
/// (the wall clock is not the simulation's).
pub(crate) fn sequence_start() -> u64 {
    if simulating() {
        return random_u64() >> 16;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A random number for the node's own use (a new cluster's id): from the operating system's
/// entropy, or while this thread simulates, from its seed.
pub fn random_u64() -> u64 {
    Runtime::thread_rng().next_u64()
}

/// A file read and written from async code (snapshot streams): tokio's, whose every call goes
/// to the blocking pool, or while this thread simulates, the file itself, read and written
/// inline.
pub enum File {
    Pool(tokio::fs::File),
    Inline {
        file: std::fs::File,
        /// A seek started and not yet completed (see `AsyncSeek`).
        seek: Option<std::io::Result<u64>>,
    },
}

impl File {
    pub fn from_std(file: std::fs::File) -> File {
        if simulating() {
            File::Inline { file, seek: None }
        } else {
            File::Pool(tokio::fs::File::from_std(file))
        }
    }

    /// Opens `path` for reading.
    pub async fn open(path: std::path::PathBuf) -> std::io::Result<File> {
        let file = offload(move || std::fs::File::open(path))
            .await
            .map_err(std::io::Error::other)??;
        Ok(File::from_std(file))
    }

    pub async fn into_std(self) -> std::fs::File {
        match self {
            File::Pool(file) => file.into_std().await,
            File::Inline { file, .. } => file,
        }
    }
}

impl AsyncRead for File {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            File::Pool(file) => Pin::new(file).poll_read(cx, buf),
            File::Inline { file, .. } => {
                let n = std::io::Read::read(file, buf.initialize_unfilled())?;
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncWrite for File {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            File::Pool(file) => Pin::new(file).poll_write(cx, data),
            File::Inline { file, .. } => Poll::Ready(std::io::Write::write(file, data)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            File::Pool(file) => Pin::new(file).poll_flush(cx),
            File::Inline { .. } => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            File::Pool(file) => Pin::new(file).poll_shutdown(cx),
            File::Inline { .. } => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncSeek for File {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> std::io::Result<()> {
        match self.get_mut() {
            File::Pool(file) => Pin::new(file).start_seek(position),
            File::Inline { file, seek } => {
                *seek = Some(std::io::Seek::seek(file, position));
                Ok(())
            }
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        match self.get_mut() {
            File::Pool(file) => Pin::new(file).poll_complete(cx),
            File::Inline { file, seek } => Poll::Ready(match seek.take() {
                Some(result) => result,
                None => std::io::Seek::stream_position(file),
            }),
        }
    }
}

/// openraft's runtime: tokio's, except for where the election-timeout randomness comes from.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Runtime;

type Tokio = TokioRuntime;

impl AsyncRuntime for Runtime {
    type JoinError = <Tokio as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <Tokio as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <Tokio as AsyncRuntime>::Sleep;
    type Instant = <Tokio as AsyncRuntime>::Instant;
    type TimeoutError = <Tokio as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = <Tokio as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = rand::rngs::StdRng;
    type OneshotSender<T: OptionalSend> = <Tokio as AsyncRuntime>::OneshotSender<T>;
    type OneshotReceiverError = <Tokio as AsyncRuntime>::OneshotReceiverError;
    type OneshotReceiver<T: OptionalSend> = <Tokio as AsyncRuntime>::OneshotReceiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        Tokio::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Tokio::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Tokio::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(duration: Duration, future: F) -> Self::Timeout<R, F> {
        Tokio::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(deadline: Self::Instant, future: F) -> Self::Timeout<R, F> {
        Tokio::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        Tokio::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        match SIMULATED.get() {
            Some(seed) => {
                // Each draw gets its own generator; the next one a different seed.
                let mut next = rand::rngs::StdRng::seed_from_u64(seed);
                SIMULATED.set(Some(next.next_u64()));
                rand::rngs::StdRng::seed_from_u64(seed)
            }
            None => rand::rngs::StdRng::from_entropy(),
        }
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        Tokio::oneshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn a_simulating_thread_draws_the_same_timeouts_for_the_same_seed() {
        let draws = |seed| {
            simulate_on_this_thread(seed);
            let d: Vec<u64> = (0..3).map(|_| Runtime::thread_rng().gen_range(1000..2000)).collect();
            stop_simulating_on_this_thread();
            d
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
        let three = draws(7);
        assert!(
            three[0] != three[1] || three[1] != three[2],
            "each draw moves on: {three:?}"
        );
    }

    #[test]
    fn a_simulating_thread_starts_snapshot_ids_from_its_seed() {
        let starts = |seed| {
            simulate_on_this_thread(seed);
            let s = (sequence_start(), sequence_start());
            stop_simulating_on_this_thread();
            s
        };
        assert_eq!(starts(7), starts(7));
        assert_ne!(starts(7).0, starts(7).1, "a restart starts elsewhere");
        assert_ne!(starts(7), starts(8));
    }
}
