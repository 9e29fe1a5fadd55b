//! SIGTERM under load: every send answered truthfully.

use super::*;

/// SIGTERM under load (issue: "SIGTERM drops sends in flight"): every send the edge accepted
/// is stored and acknowledged before the socket closes; every later one it read is refused,
/// saying it was not stored, and is not. What the client had sent but the edge had not read
/// yet when the sockets closed gets no answer (the client sees the disconnect) and is not
/// stored either. No one is told a lie.
#[tokio::test]
async fn sigterm_under_load_answers_every_send_truthfully() {
    // Fewer than a socket's queue holds (2,048 packets): the acknowledgements never fill it,
    // so the socket is not cut off as a slow reader (whose unread answers would be lost).
    const N: usize = 1500;
    const CID: u64 = 1801;
    let limits = "events_per_second = 1000000\nevents_burst = 1000000\n\
                  ip_events_per_second = 1000000\nip_events_burst = 1000000\n";
    let Some((server, db)) = start(Backend::Sqlite, limits).await else {
        return;
    };
    let mut v = page(&server, CID).await;
    let each: Vec<Vec<Value>> = (0..N)
        .map(|i| {
            vec![json!({ "username": CID.to_string(), "message": format!("m{i}"), "room": room(CID) })]
        })
        .collect();
    let ids = v.emit_acks("new message", &each).await;
    // The signal comes once the first messages are stored and many are still to come.
    let first = v.ack_of(ids[0]).await.expect("the first send is answered");
    server.begin_shutdown();
    let mut answers = vec![Ok(first)];
    for &id in &ids[1..] {
        answers.push(v.ack_of(id).await);
    }
    assert!(server.exited().await, "socketgram exits cleanly on SIGTERM");

    let mut stored_ids = Vec::new();
    let (mut refused, mut unanswered) = (0, 0);
    for (i, answer) in answers.iter().enumerate() {
        let Ok(answer) = answer else {
            unanswered += 1;
            continue;
        };
        if let Some(label) = answer["data"]["label"].as_u64() {
            stored_ids.push((i, label));
            continue;
        }
        assert_refusal(&answer["error"], "new message", "unavailable");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("not stored"),
            "send {i}: a refusal must say the message was not stored: {answer}"
        );
        refused += 1;
    }
    assert!(
        !stored_ids.is_empty() && refused + unanswered > 0,
        "the signal came mid-load: {} stored, {refused} refused, {unanswered} unanswered",
        stored_ids.len()
    );
    assert_eq!(
        count(&db, &format!("cid = {CID}")).await,
        stored_ids.len() as u64,
        "exactly the acknowledged messages are stored ({refused} refused, {unanswered} unanswered)"
    );
    for &(i, id) in [stored_ids[0], *stored_ids.last().expect("one")].iter() {
        assert_eq!(stored(&db, id).await.message, format!("m{i}"));
    }
    db.drop_db().await;
}

/// The mechanism behind losing answers at SIGTERM, made certain: a connection the server
/// closes while its client is still sending, and before the client has read the answer.
/// Closing a socket with unread input makes the kernel reset it and drop what was still
/// waiting to be sent; the edge closes lingering instead (shut the write side, read and drop
/// what still comes), so a slow reader gets every byte written to it, then the end.
#[tokio::test]
async fn a_connection_closed_with_unread_input_still_delivers_its_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some((server, db)) = start(Backend::Sqlite, "").await else {
        return;
    };
    let addr: std::net::SocketAddr = server
        .web_url()
        .trim_start_matches("http://")
        .parse()
        .expect("a socket address");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // A small window: most of the answer waits in the server's send buffer while the client
    // does not read.
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(addr).await.expect("connect");
    let mut request =
        b"GET /socket.io/socket.io.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec();
    // Sent after the request, never read by the server: it answers one request and closes.
    request.extend(std::iter::repeat_n(b'j', 64 * 1024));
    tcp.write_all(&request).await.unwrap();
    // A reader that is busy elsewhere (as a client emitting a burst is): the server answers
    // and closes meanwhile.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut response))
        .await
        .expect("the server ends the connection");
    let got = response.len();
    read.unwrap_or_else(|e| panic!("the connection was reset after {got} bytes: {e}"));
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    let head = String::from_utf8_lossy(&response[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .expect("a content length")
        .trim()
        .parse()
        .unwrap();
    assert!(length > 100_000, "the answer outgrows the client's window");
    assert_eq!(got - head_end, length, "every byte of the answer arrived");
    stop(server, db).await;
}
