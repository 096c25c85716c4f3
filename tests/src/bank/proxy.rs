//! A TCP proxy between the servers and PostgreSQL (127.0.0.1:5432), as in
//! `server/tests/faults.rs`: cutting it drops every connection and closes the port, which is
//! what the servers see when the database restarts. (The machine's PostgreSQL itself is
//! shared and never restarted by the test.)

use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

pub struct Proxy {
    pub port: u16,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    accept: Option<tokio::task::JoinHandle<()>>,
    relays: Vec<tokio::task::AbortHandle>,
}

impl Proxy {
    pub async fn start() -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let p = Proxy {
            port: listener.local_addr()?.port(),
            inner: Default::default(),
        };
        p.serve(listener);
        Ok(p)
    }

    fn serve(&self, listener: TcpListener) {
        let inner = self.inner.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let relay = tokio::spawn(async move {
                    if let Ok(mut up) = TcpStream::connect("127.0.0.1:5432").await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                let mut g = inner.lock().expect("poisoned");
                g.relays.retain(|r| !r.is_finished());
                g.relays.push(relay.abort_handle());
            }
        });
        self.inner.lock().expect("poisoned").accept = Some(accept);
    }

    /// Drops every connection and closes the port.
    pub async fn cut(&self) {
        let (accept, relays) = {
            let mut g = self.inner.lock().expect("poisoned");
            (g.accept.take(), std::mem::take(&mut g.relays))
        };
        if let Some(a) = accept {
            a.abort();
            let _ = a.await; // the listener is closed once its task is gone
        }
        relays.iter().for_each(|r| r.abort());
    }

    /// Listens on the same port again.
    pub fn restore(&self) -> std::io::Result<()> {
        let sock = TcpSocket::new_v4()?;
        sock.set_reuseaddr(true)?;
        sock.bind(([127, 0, 0, 1], self.port).into())?;
        self.serve(sock.listen(64)?);
        Ok(())
    }
}
