//! A small NBD client for the simulated hosts: fixed-newstyle handshake with `NBD_OPT_GO`, then
//! one request at a time with simple replies. It speaks the protocol to the real NBD server
//! code; every exchange has a deadline, since a simulated TCP connection that lost a segment to
//! a partition never delivers anything after it.

use node::server::nbd::wire::*;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::TcpStream;

const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;

/// How long one exchange (the handshake, or a request and its reply) may take.
pub const EXCHANGE_WAIT: Duration = Duration::from_secs(30);

pub struct NbdClient {
    stream: TcpStream,
    next_cookie: u64,
    pub size: u64,
}

/// What a request came back with.
#[derive(Debug)]
pub enum Outcome<T> {
    Done(T),
    /// The server answered with this NBD error number.
    Refused(u32),
}

async fn within<T>(f: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(EXCHANGE_WAIT, f)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time")))
}

impl NbdClient {
    /// Connects to `addr` and opens `volume`.
    pub async fn open(addr: &str, volume: &str) -> io::Result<NbdClient> {
        within(async {
            let mut stream = TcpStream::connect(addr).await?;
            let mut greeting = [0u8; 18];
            stream.read_exact(&mut greeting).await?;
            if u64::from_be_bytes(greeting[0..8].try_into().unwrap()) != NBDMAGIC {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "not an NBD server"));
            }
            stream
                .write_all(&(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES).to_be_bytes())
                .await?;
            let mut data = (volume.len() as u32).to_be_bytes().to_vec();
            data.extend_from_slice(volume.as_bytes());
            data.extend_from_slice(&0u16.to_be_bytes());
            let mut option = IHAVEOPT.to_be_bytes().to_vec();
            option.extend_from_slice(&OPT_GO.to_be_bytes());
            option.extend_from_slice(&(data.len() as u32).to_be_bytes());
            option.extend_from_slice(&data);
            stream.write_all(&option).await?;
            let mut size = None;
            loop {
                let mut header = [0u8; 20];
                stream.read_exact(&mut header).await?;
                let kind = u32::from_be_bytes(header[12..16].try_into().unwrap());
                let len = u32::from_be_bytes(header[16..20].try_into().unwrap()) as usize;
                let mut payload = vec![0u8; len];
                stream.read_exact(&mut payload).await?;
                if kind == REP_INFO && len >= 12 && u16::from_be_bytes([payload[0], payload[1]]) == INFO_EXPORT {
                    size = Some(u64::from_be_bytes(payload[2..10].try_into().unwrap()));
                } else if kind == REP_ACK {
                    break;
                } else if kind & (1 << 31) != 0 {
                    return Err(io::Error::other(format!(
                        "OPT_GO refused ({kind:#x}): {}",
                        String::from_utf8_lossy(&payload)
                    )));
                }
            }
            Ok(NbdClient {
                stream,
                next_cookie: 1,
                size: size.unwrap_or(0),
            })
        })
        .await
    }

    async fn request(&mut self, kind: u16, offset: u64, length: u32, payload: &[u8]) -> io::Result<Outcome<Vec<u8>>> {
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        let mut m = REQUEST_MAGIC.to_be_bytes().to_vec();
        m.extend_from_slice(&0u16.to_be_bytes());
        m.extend_from_slice(&kind.to_be_bytes());
        m.extend_from_slice(&cookie.to_be_bytes());
        m.extend_from_slice(&offset.to_be_bytes());
        m.extend_from_slice(&length.to_be_bytes());
        m.extend_from_slice(payload);
        let stream = &mut self.stream;
        within(async move {
            stream.write_all(&m).await?;
            let mut reply = [0u8; 16];
            stream.read_exact(&mut reply).await?;
            if u32::from_be_bytes(reply[0..4].try_into().unwrap()) != SIMPLE_REPLY_MAGIC
                || u64::from_be_bytes(reply[8..16].try_into().unwrap()) != cookie
            {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "a reply out of step"));
            }
            let error = u32::from_be_bytes(reply[4..8].try_into().unwrap());
            if error != 0 {
                return Ok(Outcome::Refused(error));
            }
            let mut data = Vec::new();
            if kind == CMD_READ {
                data = vec![0u8; length as usize];
                stream.read_exact(&mut data).await?;
            }
            Ok(Outcome::Done(data))
        })
        .await
    }

    pub async fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<Outcome<()>> {
        Ok(match self.request(CMD_WRITE, offset, data.len() as u32, data).await? {
            Outcome::Done(_) => Outcome::Done(()),
            Outcome::Refused(e) => Outcome::Refused(e),
        })
    }

    pub async fn read(&mut self, offset: u64, length: u32) -> io::Result<Outcome<Vec<u8>>> {
        self.request(CMD_READ, offset, length, &[]).await
    }
}
