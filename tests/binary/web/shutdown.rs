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
