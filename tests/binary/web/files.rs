//! Files on the web edge, as the widget, the console and the legacy pages meet them: a ticket
//! from the socket, the bytes by `POST`, the message naming the file, and links that open it
//! for the conversation's visitor and support only. Bad files leave nothing behind.

use std::path::Path;

use socketgram_tests::files::{files_under, image_size, pdf, png, upload};
use tokio::io::AsyncWriteExt as _;

use super::*;

/// A configuration with the files in `dir`, at most `max_bytes` each.
fn files_config(dir: &Path, max_bytes: u64, extra: &str) -> String {
    format!(
        "[core.attachments]\ndir = \"{}\"\nmax_bytes = {max_bytes}\n{extra}\n{}",
        dir.display(),
        config(ROOMY)
    )
}

/// The widget of `cid`, subscribed.
async fn widget(server: &TestServer, cid: u64) -> SioClient {
    let mut widget = SioClient::connect_token(
        "widget",
        &server.web_url(),
        json!({ "token": visitor_token(cid) }),
    )
    .await;
    let ack = widget.emit_ack("subscribe", &[json!({})]).await;
    assert!(ack.get("data").is_some(), "{ack}");
    widget
}

/// A ticket for one file, asked for on a socket (`upload` or `upload:servadm`).
async fn ticket(socket: &mut SioClient, event: &str, payload: Value) -> String {
    let ack = socket.emit_ack(event, &[payload]).await;
    ack["data"]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("no upload ticket: {ack}"))
        .to_owned()
}

async fn fetch(url: &str) -> reqwest::Response {
    reqwest::get(url).await.expect("a file request")
}

/// The full story on SQLite: the widget sends a picture and a PDF with a text; a token admin
/// (Socketgram's console) gets them as files with links, the PHP admin as lines with whole
/// links in the text, and the table as lines naming them. The links open the files with
/// headers that never let a browser run them; a forged link, or one for another file or
/// another conversation, opens nothing. Support
/// answers with a file of its own, with no text.
#[tokio::test]
async fn a_visitor_and_support_exchange_files_every_page_can_open() {
    let Some(db) = TestDb::create(Backend::Sqlite).await else {
        return;
    };
    if !sio::available().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&db.url, &files_config(dir.path(), 1 << 20, "")).await;
    add_admin(&db, "alice", "Alice").await;
    let (cid, url) = (3101, server.web_url());
    let token = TokenSigner::new(TOKEN_SECRET.as_bytes()).sign(TokenKind::Admin, "alice", 600);
    let mut alice = SioClient::connect_token("alice", &url, json!({ "admin_token": token })).await;
    let mut php = admin(&server).await;
    let mut visitor = widget(&server, cid).await;

    let picture = png(640, 480);
    let ack = visitor
        .emit_ack(
            "upload",
            &[json!({ "name": "holiday.png", "size": picture.len() })],
        )
        .await;
    assert_eq!(ack["data"]["max_bytes"], json!(1 << 20), "{ack}");
    assert_eq!(ack["data"]["max_files"], json!(5), "{ack}");
    assert!(
        ack["data"]["types"]
            .as_array()
            .unwrap()
            .contains(&json!("image/png"))
    );
    let (status, body) = upload(&url, ack["data"]["url"].as_str().unwrap(), picture.clone()).await;
    assert_eq!(status, 201, "{body}");
    let png_file = &body["data"];
    assert_eq!(
        (
            png_file["type"].clone(),
            png_file["width"].clone(),
            png_file["thumb"].clone()
        ),
        (json!("image/png"), json!(640), json!(true)),
        "{body}"
    );
    let ticket_url = ticket(
        &mut visitor,
        "upload",
        json!({ "name": "../bill.pdf", "size": 10 }),
    )
    .await;
    let (status, body) = upload(&url, &ticket_url, pdf()).await;
    assert_eq!(status, 201, "{body}");
    let pdf_file = &body["data"];
    assert_eq!(pdf_file["name"], json!("bill.pdf"), "no path in a name");
    assert_eq!(pdf_file["type"], json!("application/pdf"));

    let ack = visitor
        .emit_ack(
            "new message",
            &[json!({ "message": "see <these>", "attachments": [png_file["id"], pdf_file["id"]] })],
        )
        .await;
    assert!(ack.get("data").is_some(), "{ack}");

    // Socketgram's support client: the files, with links.
    let got = alice.next_payload("new message").await;
    assert_eq!(got["message"], json!("see <these>"));
    let files = got["attachments"].as_array().expect("attachments").clone();
    assert_eq!(files.len(), 2, "{got}");
    assert_eq!(files[0]["name"], json!("holiday.png"));
    assert_eq!(files[1]["name"], json!("bill.pdf"));
    let picture_url = format!("{url}{}", files[0]["url"].as_str().unwrap());
    let response = fetch(&picture_url).await;
    assert_eq!(response.status().as_u16(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("inline")
    );
    assert_eq!(
        response.bytes().await.unwrap().to_vec(),
        picture,
        "the same bytes"
    );
    let thumb = fetch(&format!("{url}{}", files[0]["thumb_url"].as_str().unwrap())).await;
    assert_eq!(thumb.status().as_u16(), 200);
    let thumb_type = thumb.headers()["content-type"].to_str().unwrap().to_owned();
    let thumb = image_size(&thumb.bytes().await.unwrap());
    assert_eq!(thumb, (320, 240), "{thumb_type}");
    let bill = fetch(&format!("{url}{}", files[1]["url"].as_str().unwrap())).await;
    assert!(
        bill.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"bill.pdf\""),
        "anything but an image is saved, never shown"
    );
    assert_eq!(bill.bytes().await.unwrap().to_vec(), pdf());

    // The PHP admin: lines with whole links, in the escaped text it inserts as HTML.
    let legacy = php.next_payload("new message").await;
    let text = legacy["message"].as_str().unwrap();
    assert!(
        text.starts_with("see &lt;these&gt;\n📎 holiday.png ("),
        "{text}"
    );
    assert!(text.contains(&format!("): {url}/files/")), "{text}");
    assert!(
        legacy.get("attachments").is_none(),
        "the legacy payload is unchanged"
    );
    let legacy_link = text.lines().nth(1).unwrap().split("): ").nth(1).unwrap();
    assert_eq!(fetch(legacy_link).await.status().as_u16(), 200);
    // The table, as the PHP admin reads it: a line naming each file.
    let stored = db
        .fetch_text(&format!("SELECT message FROM messages WHERE cid = {cid}"))
        .await
        .expect("read messages")
        .expect("the message row");
    assert!(
        stored.starts_with("see &lt;these&gt;\n📎 holiday.png (")
            && stored.contains("📎 bill.pdf ("),
        "{stored}"
    );

    // Links open their own file only, while they last, with the key of this server.
    let forged = picture_url.replace("?t=f1.", "?t=f1.9");
    assert_eq!(fetch(&forged).await.status().as_u16(), 403);
    let other_id = picture_url.replacen(
        &format!("/files/{}/", files[0]["id"]),
        &format!("/files/{}/", files[1]["id"]),
        1,
    );
    assert_eq!(
        fetch(&other_id).await.status().as_u16(),
        403,
        "a link opens its own file"
    );
    let other_conversation = FileLinksFor::sign(files[0]["id"].as_u64().unwrap(), 999, 600);
    assert_eq!(
        fetch(&format!(
            "{url}/files/{}/x?t={other_conversation}",
            files[0]["id"]
        ))
        .await
        .status()
        .as_u16(),
        404,
        "a link for another conversation finds no such file there"
    );

    // Support answers with a picture and no text.
    let reply_picture = png(40, 30);
    let ticket_url = ticket(
        &mut alice,
        "upload:servadm",
        json!({ "username": cid, "name": "answer.png", "size": reply_picture.len() }),
    )
    .await;
    let (status, body) = upload(&url, &ticket_url, reply_picture.clone()).await;
    assert_eq!(status, 201, "{body}");
    let ack = alice
        .emit_ack(
            "new message:servadm",
            &[json!({ "username": cid, "message": "", "attachments": [body["data"]["id"]] })],
        )
        .await;
    assert!(ack.get("data").is_some(), "{ack}");
    let _ = visitor.next_payload("new message").await; // the visitor's own message
    let answer = visitor.next_payload("new message").await;
    assert_eq!(answer["message"], json!(""));
    assert_eq!(answer["adm"], json!("Alice Acme"));
    let file_url = format!("{url}{}", answer["attachments"][0]["url"].as_str().unwrap());
    assert_eq!(
        fetch(&file_url).await.bytes().await.unwrap().to_vec(),
        reply_picture
    );

    // History brings the files back, with fresh links.
    let mut again = widget(&server, cid).await;
    let first = again.next_payload("new message").await;
    assert_eq!(first["message"], json!("see <these>"));
    assert_eq!(first["attachments"].as_array().unwrap().len(), 2, "{first}");
    assert_eq!(
        files_under(&dir.path().join("files")).len(),
        5,
        "3 files, 2 thumbnails"
    );
    // Erased with the conversation: rows and bytes.
    server
        .chat()
        .await
        .erase_conversation(pb::EraseConversationRequest {
            conversation_id: cid,
            admin_id: "alice".into(),
        })
        .await
        .expect("erase");
    assert!(
        files_under(&dir.path().join("files")).is_empty(),
        "the bytes go too"
    );
    assert_eq!(fetch(&file_url).await.status().as_u16(), 404);
    stop(server, db).await;
}

/// A link signed with the server's key for a file and a conversation it never gave out.
struct FileLinksFor;

impl FileLinksFor {
    fn sign(file: u64, conversation: u64, ttl: u64) -> String {
        TokenSigner::new(TOKEN_SECRET.as_bytes()).sign(
            TokenKind::File,
            &format!("{file}.{conversation}.f"),
            ttl,
        )
    }
}

/// Files that are not accepted: too large (refused before and during the upload), markup
/// named as a picture, an empty file, an upload that breaks off, a message naming a file of
/// another conversation, one taken already, or too many. Each is a clear refusal, and the
/// storage holds only what was accepted: no bytes of a refused upload, nothing in staging.
#[tokio::test]
async fn refused_files_leave_nothing_behind() {
    let Some(db) = TestDb::create(Backend::Sqlite).await else {
        return;
    };
    if !sio::available().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = files_config(dir.path(), 64 * 1024, "max_per_message = 2");
    let server = TestServer::start(&db.url, &config).await;
    let (cid, url) = (3201, server.web_url());
    let mut visitor = widget(&server, cid).await;

    let ack = visitor
        .emit_ack("upload", &[json!({ "name": "big.zip", "size": 65 * 1024 })])
        .await;
    assert_eq!(ack["error"]["code"], json!("invalid"), "{ack}");
    assert!(
        ack["error"]["message"].as_str().unwrap().contains("64 KB"),
        "{ack}"
    );
    let ack = visitor.emit_ack("upload", &[json!({ "name": "x" })]).await;
    assert!(
        ack["error"]["message"].as_str().unwrap().contains("size"),
        "{ack}"
    );

    let ticket_url = ticket(
        &mut visitor,
        "upload",
        json!({ "name": "a.png", "size": 1 }),
    )
    .await;
    let (status, body) = upload(&url, &ticket_url, vec![7u8; 70 * 1024]).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (413, json!("too_large")),
        "{body}"
    );
    let (status, body) = upload(&url, &ticket_url, b"<svg onload=alert(1)></svg>".to_vec()).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (415, json!("type_not_allowed")),
        "{body}"
    );
    let (status, body) = upload(&url, &ticket_url, Vec::new()).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("invalid")),
        "{body}"
    );
    let (status, body) = upload(&url, "/files/upload?t=u1.3201.v.1.00", png(2, 2)).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (403, json!("forbidden")),
        "{body}"
    );

    // A body that stops short of its Content-Length, then the client goes away.
    let web = server.web.unwrap();
    let mut raw = tokio::net::TcpStream::connect(web).await.unwrap();
    let head =
        format!("POST {ticket_url} HTTP/1.1\r\nHost: {web}\r\nContent-Length: 40000\r\n\r\n");
    raw.write_all(head.as_bytes()).await.unwrap();
    raw.write_all(&png(200, 200)[..1000]).await.unwrap();
    raw.flush().await.unwrap();
    tokio::time::sleep(QUIET).await;
    drop(raw);

    // Files of this conversation only, each once, at most two.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, body) = upload(&url, &ticket_url, png(4, 4)).await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["data"]["id"].clone());
    }
    let mut stranger = widget(&server, 3202).await;
    let ack = stranger
        .emit_ack(
            "new message",
            &[json!({ "message": "mine?", "attachments": [ids[0]] })],
        )
        .await;
    assert_eq!(ack["error"]["code"], json!("refused"), "{ack}");
    let ack = visitor
        .emit_ack(
            "new message",
            &[json!({ "message": "", "attachments": ids.clone() })],
        )
        .await;
    assert_eq!(ack["error"]["code"], json!("invalid"), "{ack}");
    let ack = visitor
        .emit_ack(
            "new message",
            &[json!({ "message": "", "attachments": [ids[0], ids[0]] })],
        )
        .await;
    assert_eq!(ack["error"]["code"], json!("refused"), "{ack}");
    let ack = visitor
        .emit_ack(
            "new message",
            &[json!({ "message": " ", "attachments": [] })],
        )
        .await;
    assert_eq!(
        ack["error"]["code"],
        json!("invalid"),
        "no text and no file: {ack}"
    );
    let ack = visitor
        .emit_ack(
            "new message",
            &[json!({ "message": "", "attachments": "1" })],
        )
        .await;
    assert!(
        ack["error"]["message"]
            .as_str()
            .unwrap()
            .contains("attachments"),
        "{ack}"
    );
    let send = json!({ "message": "", "attachments": [ids[0]], "client_msg_id": "m-1" });
    let first = visitor
        .emit_ack("new message", std::slice::from_ref(&send))
        .await;
    assert!(first["data"]["label"].is_u64(), "{first}");
    let retried = visitor.emit_ack("new message", &[send]).await;
    assert_eq!(
        retried["data"]["label"], first["data"]["label"],
        "a retry of a message with its files is the message stored: {retried}"
    );
    let ack = visitor
        .emit_ack(
            "new message",
            &[json!({ "message": "again", "attachments": [ids[0]] })],
        )
        .await;
    assert_eq!(
        ack["error"]["code"],
        json!("refused"),
        "a file goes with one message: {ack}"
    );

    // Only the three accepted files and their thumbnails are kept; staging is empty.
    let mut kept = Vec::new();
    for _ in 0..50 {
        kept = files_under(dir.path());
        if kept.len() == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(kept.len(), 6, "{kept:?}");
    assert!(
        kept.iter().all(|p| p.starts_with(dir.path().join("files"))),
        "{kept:?}"
    );

    // Files waiting for a message are bounded per conversation (4 messages' worth): 2 wait.
    for _ in 0..6 {
        let (status, body) = upload(&url, &ticket_url, b"note".to_vec()).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = upload(&url, &ticket_url, b"one more".to_vec()).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (429, json!("limit_reached")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("8 files"),
        "{body}"
    );
    stop(server, db).await;
}

/// The sweep at start: an upload no message took within `unattached_secs` goes (row and
/// bytes), bytes no row names go, and so does an upload a stopped process left in staging;
/// a file of a message stays.
#[tokio::test]
async fn the_sweep_at_start_deletes_what_no_message_took() {
    let Some(db) = TestDb::create(Backend::Sqlite).await else {
        return;
    };
    if !sio::available().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = files_config(
        dir.path(),
        1 << 20,
        "unattached_secs = 0\norphan_grace_secs = 0",
    );
    let server = TestServer::start(&db.url, &config).await;
    let (cid, url) = (3301, server.web_url());
    let mut visitor = widget(&server, cid).await;
    let ticket_url = ticket(
        &mut visitor,
        "upload",
        json!({ "name": "a.png", "size": 1 }),
    )
    .await;
    let (_, kept) = upload(&url, &ticket_url, png(8, 8)).await;
    let (_, left) = upload(&url, &ticket_url, pdf()).await;
    let ack = visitor
        .emit_ack(
            "new message",
            &[json!({ "message": "kept", "attachments": [kept["data"]["id"]] })],
        )
        .await;
    assert!(ack.get("data").is_some(), "{ack}");
    visitor.disconnect().await;
    assert!(server.terminate().await);
    std::fs::create_dir_all(dir.path().join("files/ab")).unwrap();
    std::fs::write(dir.path().join("files/ab/abcdef0123456789"), b"orphan").unwrap();
    std::fs::create_dir_all(dir.path().join("staging")).unwrap();
    std::fs::write(dir.path().join("staging/upload-killed"), b"half").unwrap();
    assert_eq!(
        files_under(dir.path()).len(),
        5,
        "2 files, 1 thumbnail, an orphan, a staged one"
    );

    let server = TestServer::start(&db.url, &config).await;
    let mut left_now = Vec::new();
    for _ in 0..100 {
        left_now = files_under(dir.path());
        if left_now.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        left_now.len(),
        2,
        "the message's file and its thumbnail: {left_now:?}"
    );
    let rows = db
        .fetch_text("SELECT CAST(COUNT(*) AS TEXT) FROM sg_attachments")
        .await
        .expect("count files");
    assert_eq!(
        rows.as_deref(),
        Some("1"),
        "the unattached upload's row is gone"
    );
    let mut again = widget(&server, cid).await;
    let shown = again.next_payload("new message").await;
    assert_eq!(shown["attachments"][0]["name"], json!("a.png"));
    let fetched = fetch(&format!(
        "{}{}",
        server.web_url(),
        shown["attachments"][0]["url"].as_str().unwrap()
    ))
    .await;
    assert_eq!(fetched.status().as_u16(), 200);
    let _ = left;
    stop(server, db).await;
}
