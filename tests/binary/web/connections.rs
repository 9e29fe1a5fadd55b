//! What a connection may cost before and after it authenticates: oversized and stalled frames, slow request heads, unauthenticated connections per client, slow readers.

use super::*;

/// An admin whose reader stops falls behind the messages: it is cut off for real, never left
/// connected with a gap. What it received is an unbroken run of messages, then its connection
/// closes (the client reconnects, as after any network drop); an admin that reads gets all.
#[tokio::test]
async fn a_slow_admin_is_cut_off_not_left_with_a_gap() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    const SENT: u64 = 4000;
    const LATER: u64 = 100;
    let mut reader = admin(&server).await;
    // A raw WebSocket admin with a tiny receive window, that stops reading once connected.
    let addr: std::net::SocketAddr = server
        .web_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let request = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket&adminpass=admin")
        .into_client_request()
        .unwrap();
    let (mut slow, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    match slow.next().await {
        Some(Ok(Message::Text(t))) if t.starts_with('0') => {}
        other => panic!("expected the open packet, got {other:?}"),
    }
    slow.send(Message::text("40")).await.unwrap();
    loop {
        match slow.next().await {
            Some(Ok(Message::Text(t))) if t.starts_with("40") => break,
            Some(Ok(_)) => {}
            other => panic!("expected the namespace connect, got {other:?}"),
        }
    }

    // Far more than the socket's queue holds, from several senders at once.
    let text = "m".repeat(9000);
    let flood = |conversation: u64, n: u64| {
        let server_chat = server.chat();
        let text = text.clone();
        async move {
            let mut chat = server_chat.await;
            for _ in 0..n {
                chat.send_message(pb::SendMessageRequest {
                    attachment_ids: Vec::new(),
                    conversation_id: conversation,
                    author: Some(pb::Author {
                        kind: pb::AuthorKind::Visitor as i32,
                        admin_id: String::new(),
                    }),
                    text: text.clone(),
                    client_msg_id: String::new(),
                })
                .await
                .expect("stored");
            }
        }
    };
    futures::future::join_all((0..8).map(|part| flood(2001 + part, SENT / 8))).await;

    // The slow admin reads again while more messages come: it must not get them after a gap.
    let reading = tokio::spawn(async move {
        let mut labels: Vec<u64> = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), slow.next()).await {
                Err(_) => return (labels, false),
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return (labels, true),
                Ok(Some(Ok(Message::Text(t)))) => {
                    if let Some(body) = t.strip_prefix("42")
                        && let Ok(Value::Array(event)) = serde_json::from_str::<Value>(body)
                        && event[0] == "new message"
                    {
                        labels.push(event[1]["label"].as_u64().unwrap());
                    }
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    });
    flood(2100, LATER).await;
    let mut got = 0u64;
    while got < SENT + LATER {
        if reader.next("new message").await.len() == 1 {
            got += 1;
        }
    }
    let (labels, ended) = reading.await.unwrap();
    assert!(ended, "the slow admin is disconnected, not left waiting");
    assert!(
        (labels.len() as u64) < SENT,
        "the slow admin fell behind (the test needs it to): got all {SENT}"
    );
    assert!(
        labels.windows(2).all(|w| w[1] == w[0] + 1),
        "no gap in what the slow admin got: {} messages, first {:?}, last {:?}",
        labels.len(),
        labels.first(),
        labels.last()
    );
    assert_eq!(count(&db, "1 = 1").await, SENT + LATER);
    stop(server, db).await;
}

/// A WebSocket frame announcing more than `[web.limits] max_packet_bytes` is refused when its
/// header arrives, before the client has authenticated and before any of it is buffered: the
/// connection closes at once instead of holding megabytes while the client trickles.
#[tokio::test]
async fn an_oversized_frame_closes_the_connection_before_authentication() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let Some((server, db)) = start(Backend::Sqlite, ROOMY).await else {
        return;
    };
    let addr = server.web_url().trim_start_matches("http://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket")
        .into_client_request()
        .unwrap();
    let (ws, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    let mut tcp = ws.into_inner();
    // A masked text frame announcing 8 MiB (the default limit is 1 MiB), then a trickle.
    let mut header = vec![0x81u8, 0xFF];
    header.extend_from_slice(&(8u64 << 20).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    tcp.write_all(&header).await.unwrap();
    tcp.write_all(&[b'x'; 1024]).await.unwrap();
    let mut sink = vec![0u8; 64 * 1024];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server still holds the connection");
    stop(server, db).await;
}

/// Slowloris (issue: "nothing times out slow HTTP request heads"): a request head trickled a
/// byte at a time is cut at `handshake_timeout_secs`, and so is a connection that never
/// starts one; a client that sends its head in time is served.
#[tokio::test]
async fn slow_request_heads_are_cut_at_the_handshake_timeout() {
    use tokio::io::AsyncWriteExt;
    let limits = format!("{ROOMY}handshake_timeout_secs = 1\n");
    let Some((server, db)) = start(Backend::Sqlite, &limits).await else {
        return;
    };
    let mut silent = raw_connection(&server).await;
    let mut trickler = raw_connection(&server).await;
    trickler
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let trickle = async {
        for _ in 0..30 {
            if trickler.write_all(b"X").await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(5), trickle)
            .await
            .unwrap_or(false),
        "a trickled request head is cut"
    );
    assert!(
        closed_within(&mut silent, Duration::from_secs(3)).await,
        "a connection that sends nothing is cut"
    );
    let mut v = page(&server, 2401).await;
    say(&mut v, 2401, "in time").await;
    legacy_message(&v.next_payload("new message").await, 2401, "in time", "0");
    stop(server, db).await;
}

/// Before anyone has authenticated (issue: "unauthenticated memory exhaustion"): one client
/// address may hold only `unauthenticated_per_ip` connections that have neither completed a
/// request head nor authenticated a socket; one more is closed at once. A WebSocket that never
/// sends its Socket.IO CONNECT, or stalls in the middle of a frame before it, is closed at
/// `handshake_timeout_secs`, not held until the ping timeout.
#[tokio::test]
async fn unauthenticated_connections_are_bounded_per_client() {
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let limits = format!("{ROOMY}unauthenticated_per_ip = 3\nhandshake_timeout_secs = 2\n");
    let Some((server, db)) = start(Backend::Sqlite, &limits).await else {
        return;
    };
    let addr = server.web_url().trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..2 {
        let request = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket")
            .into_client_request()
            .unwrap();
        let (ws, _) = tokio_tungstenite::client_async(request, raw_connection(&server).await)
            .await
            .expect("the WebSocket upgrade");
        held.push(ws.into_inner());
    }
    // One of them starts a 512 KiB frame (under max_packet_bytes) and stalls in it.
    let mut header = vec![0x81u8, 0xFF];
    header.extend_from_slice(&(512u64 << 10).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    held[0].write_all(&header).await.unwrap();
    held[0].write_all(&[b'x'; 4096]).await.unwrap();
    held.push(raw_connection(&server).await);
    // The third unproven connection is the limit: a fourth is closed at once.
    let mut extra = raw_connection(&server).await;
    assert!(
        closed_within(&mut extra, Duration::from_millis(1500)).await,
        "a connection over the unauthenticated limit is closed at once"
    );
    let started = std::time::Instant::now();
    for (i, tcp) in held.iter_mut().enumerate() {
        assert!(
            closed_within(tcp, Duration::from_secs(6)).await,
            "unauthenticated connection {i} is closed at the handshake timeout"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(6));
    // Room again: a real client connects and is served.
    let mut v = page(&server, 2402).await;
    say(&mut v, 2402, "after").await;
    legacy_message(&v.next_payload("new message").await, 2402, "after", "0");
    stop(server, db).await;
}

/// Connections per client address before any upgrade (issue: "nothing caps HTTP connections
/// per client"): past `http_connections_per_ip` open ones, a new connection is closed at once;
/// when one goes, there is room again.
#[tokio::test]
async fn http_connections_are_capped_per_client() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let limits = format!("{ROOMY}http_connections_per_ip = 4\n");
    let Some((server, db)) = start(Backend::Sqlite, &limits).await else {
        return;
    };
    // Keep-alive connections that were served once (so they are not "unauthenticated").
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut tcp = raw_connection(&server).await;
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 256];
        let n = tcp.read(&mut answer).await.unwrap();
        assert!(answer[..n].starts_with(b"HTTP/1.1 200"), "served");
        open.push(tcp);
    }
    let mut fifth = raw_connection(&server).await;
    assert!(
        closed_within(&mut fifth, Duration::from_millis(1500)).await,
        "a connection over the limit is closed at once"
    );
    drop(open.pop());
    // The server notices the close on its own time: try until there is room.
    let served = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let mut tcp = raw_connection(&server).await;
            let _ = tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
            let mut answer = [0u8; 256];
            if matches!(tcp.read(&mut answer).await, Ok(n) if answer[..n].starts_with(b"HTTP/1.1 200"))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(served.is_ok(), "room again once a connection closed");
    drop(open);
    stop(server, db).await;
}

/// What browsers do by default: start with long polling, then upgrade to WebSocket on a new
/// connection that never authenticates itself (the session it upgrades did). That connection
/// is proven by its session and outlives the handshake timeout.
#[tokio::test]
async fn a_websocket_upgraded_from_polling_outlives_the_handshake_timeout() {
    let limits = format!("{ROOMY}handshake_timeout_secs = 1\n");
    let Some((server, db)) = start(Backend::Sqlite, &limits).await else {
        return;
    };
    let handshake = page_handshake(&server, 2403).with_transports(&["polling", "websocket"]);
    let mut v = SioClient::open("upgrading page", &handshake)
        .await
        .expect("connects over polling");
    // Past the timeout, with the upgrade long done.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    say(&mut v, 2403, "still here").await;
    legacy_message(
        &v.next_payload("new message").await,
        2403,
        "still here",
        "0",
    );
    stop(server, db).await;
}
