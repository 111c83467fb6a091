use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One request a [`Receiver`] took.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request's path, e.g. `/slack`.
    pub path: String,
    /// Its body, as sent.
    pub body: String,
}

/// An HTTP/1.1 endpoint on loopback that records every POST (keep-alive
/// connections, bodies by Content-Length) and answers with a status the
/// test sets: 200, or 503 to play a sink that is down. Requests answered
/// with an error status are not recorded as taken.
#[derive(Clone)]
pub struct Receiver {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    taken: Arc<Mutex<Vec<Received>>>,
    refused: Arc<Mutex<usize>>,
}

impl Receiver {
    /// Starts it on a free port (in the current tokio runtime).
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let r = Self {
            addr: listener.local_addr().expect("addr"),
            status: Arc::new(AtomicU16::new(200)),
            taken: Arc::default(),
            refused: Arc::default(),
        };
        let state = r.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(state.clone().serve(stream));
            }
        });
        r
    }

    async fn serve(self, stream: tokio::net::TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        loop {
            let mut request_line = String::new();
            if read.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                return;
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .to_owned();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; length];
            if read.read_exact(&mut body).await.is_err() {
                return;
            }
            let status = self.status.load(Ordering::SeqCst);
            if status < 300 {
                self.taken
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Received {
                        path,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
            } else {
                *self.refused.lock().unwrap_or_else(|p| p.into_inner()) += 1;
            }
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{{}}"
            );
            if write.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    /// Its base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer every request with `status` from now on.
    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Requests taken so far (answered 2xx), oldest first.
    pub fn taken(&self) -> Vec<Received> {
        self.taken.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Requests refused (answered with an error status) so far.
    pub fn refused(&self) -> usize {
        *self.refused.lock().unwrap_or_else(|p| p.into_inner())
    }
}
