//! TCP_NODELAY on the database connections.
//!
//! sqlx 0.9.0 opens its TCP sockets with Nagle's algorithm on (a regression:
//! transact-rs/sqlx#4335, fixed by #4336 after the 0.9.0 release). A statement that does not
//! fit in one TCP segment then keeps its tail in the kernel until the server acknowledges the
//! head, which the server delays by about 40 ms: on loopback a 256-row INSERT took 47 ms
//! instead of 1 ms, and over a network any statement of a few kilobytes pays it. sqlx gives no
//! hook to its socket, so after each new pool connection this turns Nagle off on the
//! process's TCP sockets connected to the database's port. Remove once sqlx ships the fix.

// The one unsafe block of the workspace: borrowing a descriptor sqlx does not hand out.
#![allow(unsafe_code)]

/// `options` that, once a new connection is open, turn Nagle off on the sockets to `port`.
pub(crate) fn on_connect<DB: sqlx::Database>(
    options: sqlx::pool::PoolOptions<DB>,
    port: u16,
) -> sqlx::pool::PoolOptions<DB> {
    options.after_connect(move |_, _| {
        Box::pin(async move {
            // A /proc read and a few system calls per open descriptor (thousands with many
            // sockets open): kept off the async workers.
            let _ = tokio::task::spawn_blocking(move || on_sockets_to(port)).await;
            Ok(())
        })
    })
}

/// Turns TCP_NODELAY on for every TCP socket of this process whose peer port is `port`.
/// Sockets that already have it, or that close meanwhile, are left alone; errors only log.
#[cfg(target_os = "linux")]
pub(crate) fn on_sockets_to(port: u16) {
    use std::os::fd::BorrowedFd;

    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in fds.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor is only borrowed for the calls below, which read or set a
        // socket option. Were it closed (and its number reused) meanwhile, they fail with
        // EBADF/ENOTSOCK or set TCP_NODELAY on another TCP socket of ours: harmless either way.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let to_database = socket
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .is_some_and(|a| a.port() == port);
        if to_database
            && socket.tcp_nodelay().is_ok_and(|on| !on)
            && let Err(e) = socket.set_tcp_nodelay(true)
        {
            tracing::debug!(error = %e, "could not set TCP_NODELAY on a database socket");
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn on_sockets_to(_port: u16) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn turns_nagle_off_on_sockets_to_the_port_only() {
        let database = TcpListener::bind("127.0.0.1:0").unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let to_database = TcpStream::connect(database.local_addr().unwrap()).unwrap();
        let to_other = TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!to_database.nodelay().unwrap() && !to_other.nodelay().unwrap());
        super::on_sockets_to(database.local_addr().unwrap().port());
        assert!(to_database.nodelay().unwrap());
        assert!(!to_other.nodelay().unwrap());
    }
}
