//! Files for the attachment tests: real images made on the spot, a PDF, and the upload a
//! page makes (`POST` of the bytes to the ticket's URL).

use std::io::Cursor;

/// A PNG of `width` x `height` pixels, a gradient (so it does not compress to nothing).
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, 128])
    });
    let mut out = Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode a PNG");
    out.into_inner()
}

/// A small but well-formed PDF.
pub fn pdf() -> Vec<u8> {
    b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n\
      2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n\
      trailer << /Root 1 0 R >>\n%%EOF\n"
        .to_vec()
}

/// What a page's upload got back: the HTTP status and the JSON body.
pub async fn upload(web_url: &str, ticket_url: &str, bytes: Vec<u8>) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{ticket_url}", web_url.trim_end_matches('/')))
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .expect("the upload request");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or_default();
    (status, body)
}

/// Every file under `dir` (recursively): what the storage holds.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The pixel size of an image file (panics when it is not one).
pub fn image_size(bytes: &[u8]) -> (u32, u32) {
    let image = image::load_from_memory(bytes).expect("an image");
    (image.width(), image.height())
}
