//! Images' sizes and thumbnails. Decoding is bounded (pixels and memory) so a crafted image
//! cannot take the core's memory; an image that cannot be decoded is kept without a thumbnail.

use std::{io::Cursor, path::Path};

use image::{DynamicImage, ImageFormat, ImageReader, Limits};

/// The longest side of a thumbnail, in pixels.
pub const MAX_SIDE: u32 = 320;

/// The image types a thumbnail is made for.
pub const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// What an image is, and its thumbnail.
pub struct Thumbnailed {
    pub width: u32,
    pub height: u32,
    /// PNG when the image has transparency, JPEG otherwise.
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

/// Decodes the image at `path` and makes its thumbnail (blocking: run it off the runtime).
pub fn make(path: &Path) -> Result<Thumbnailed, image::ImageError> {
    let mut reader = ImageReader::open(path)?.with_guessed_format()?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(16_384);
    limits.max_image_height = Some(16_384);
    limits.max_alloc = Some(256 * 1024 * 1024);
    reader.limits(limits);
    let image = reader.decode()?;
    let (width, height) = (image.width(), image.height());
    let small = if width > MAX_SIDE || height > MAX_SIDE {
        image.thumbnail(MAX_SIDE, MAX_SIDE)
    } else {
        image
    };
    let mut bytes = Cursor::new(Vec::new());
    let content_type = if small.color().has_alpha() {
        small.write_to(&mut bytes, ImageFormat::Png)?;
        "image/png"
    } else {
        DynamicImage::ImageRgb8(small.to_rgb8()).write_to(&mut bytes, ImageFormat::Jpeg)?;
        "image/jpeg"
    };
    Ok(Thumbnailed {
        width,
        height,
        bytes: bytes.into_inner(),
        content_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_image_gets_a_small_thumbnail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.png");
        image::RgbImage::from_pixel(1000, 500, image::Rgb([200, 30, 30]))
            .save(&path)
            .unwrap();
        let done = make(&path).unwrap();
        assert_eq!((done.width, done.height), (1000, 500));
        assert_eq!(done.content_type, "image/jpeg");
        let thumb = image::load_from_memory(&done.bytes).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (320, 160));
    }

    #[test]
    fn a_broken_image_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.png");
        std::fs::write(&path, b"\x89PNG\r\n\x1a\nnot really").unwrap();
        assert!(make(&path).is_err());
    }
}
