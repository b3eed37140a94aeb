//! What openraft moves as a snapshot's data: a file, or a stream not written yet. A snapshot
//! kept as a checkpoint becomes a stream only when somebody reads it (a follower being sent
//! it); openraft also asks for the current snapshot at every start only to learn its meta, and
//! that must not cost a copy of the state.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// Writes a stream file and opens it (the file may be unlinked once open).
type Make = Box<dyn FnOnce() -> io::Result<std::fs::File> + Send>;
/// A `Make` under way (see `runtime::offload`).
type Making = Pin<Box<dyn Future<Output = Result<io::Result<std::fs::File>, tokio::task::JoinError>> + Send>>;

pub struct SnapshotData {
    state: State,
    /// A seek asked for before the stream existed.
    seek: Option<io::SeekFrom>,
}

enum State {
    Ready(crate::runtime::File),
    Waiting {
        make: Option<Make>,
        task: Option<Making>,
        /// Removed if the stream is never made (the private links it would read from).
        leftover: Option<PathBuf>,
    },
    /// Moved out by `into_file`.
    Taken,
}

impl SnapshotData {
    pub fn file(file: crate::runtime::File) -> Self {
        SnapshotData {
            state: State::Ready(file),
            seek: None,
        }
    }

    /// A stream that `make` writes on the first read; `leftover` is removed if nobody reads.
    pub(crate) fn lazy(make: Make, leftover: &Path) -> Self {
        SnapshotData {
            state: State::Waiting {
                make: Some(make),
                task: None,
                leftover: Some(leftover.to_path_buf()),
            },
            seek: None,
        }
    }

    /// The file, made first if need be.
    fn poll_file(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&mut crate::runtime::File>> {
        if let State::Waiting { make, task, leftover } = &mut self.state {
            if task.is_none() {
                let make = make.take().expect("made once");
                // The maker removes its links itself.
                leftover.take();
                *task = Some(Box::pin(crate::runtime::offload(make)));
            }
            let made = ready!(task.as_mut().expect("started").as_mut().poll(cx));
            let file = made.map_err(io::Error::other)??;
            self.state = State::Ready(crate::runtime::File::from_std(file));
        }
        match &mut self.state {
            State::Ready(file) => Poll::Ready(Ok(file)),
            _ => Poll::Ready(Err(io::Error::other("the snapshot's data was taken"))),
        }
    }

    /// The file, made first if need be (for installing a received snapshot).
    pub(crate) async fn into_file(mut self) -> io::Result<crate::runtime::File> {
        std::future::poll_fn(|cx| self.poll_file(cx).map_ok(|_| ())).await?;
        match std::mem::replace(&mut self.state, State::Taken) {
            State::Ready(file) => Ok(file),
            _ => unreachable!("made above"),
        }
    }
}

impl Drop for SnapshotData {
    fn drop(&mut self) {
        if let State::Waiting {
            leftover: Some(path), ..
        } = &self.state
        {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

impl AsyncRead for SnapshotData {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let file = ready!(this.poll_file(cx))?;
        Pin::new(file).poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotData {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let file = ready!(this.poll_file(cx))?;
        Pin::new(file).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let file = ready!(this.poll_file(cx))?;
        Pin::new(file).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let file = ready!(this.poll_file(cx))?;
        Pin::new(file).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotData {
    fn start_seek(self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        match &mut this.state {
            State::Ready(file) => Pin::new(file).start_seek(position),
            State::Waiting { .. } | State::Taken => {
                this.seek = Some(position);
                Ok(())
            }
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let this = self.get_mut();
        let seek = this.seek.take();
        let file = match this.poll_file(cx) {
            Poll::Ready(file) => file?,
            Poll::Pending => {
                this.seek = seek;
                return Poll::Pending;
            }
        };
        if let Some(position) = seek {
            Pin::new(&mut *file).start_seek(position)?;
        }
        Pin::new(file).poll_complete(cx)
    }
}
