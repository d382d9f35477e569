//! Thumbnails of image files: decoded with limits (a small file that claims huge
//! dimensions, a decompression bomb, is refused before its pixels are allocated),
//! scaled to fit a `WxH` box keeping the ratio (never enlarged; `0` on one side
//! follows the other), and stored once under the thumbnail's key, where later
//! requests find it. JPEG stays JPEG; PNG, GIF (first frame) and WebP become PNG.

use std::io::Cursor;

use bytes::Bytes;
use image::{DynamicImage, ImageFormat, ImageReader, Limits, imageops::FilterType};

use super::{FileError, FileStore, keys};
use crate::spec::file_keys::ThumbSize;

/// The largest width or height of an image a thumbnail is made of.
pub const MAX_SOURCE_SIDE: u32 = 10_000;
/// The most memory decoding one image may take.
pub const MAX_DECODE_ALLOC: u64 = 256 * 1024 * 1024;
/// The largest file a thumbnail is made of, in bytes (it is read whole).
pub const MAX_SOURCE_BYTES: u64 = 50 * 1024 * 1024;

/// The types thumbnails are made of.
pub const THUMB_SOURCES: [&str; 4] = ["image/png", "image/jpeg", "image/webp", "image/gif"];

/// The type of the thumbnails of a file of type `source`.
pub fn thumb_type(source: &str) -> &'static str {
    if source == "image/jpeg" {
        "image/jpeg"
    } else {
        "image/png"
    }
}

/// The size of the thumbnail `box_` of an image of `width` × `height`.
pub fn fit(width: u32, height: u32, box_: ThumbSize) -> (u32, u32) {
    let (w, h) = (u64::from(width.max(1)), u64::from(height.max(1)));
    // The scale as a fraction num/den, at most 1 (never enlarged).
    let (num, den) = match (u64::from(box_.width), u64::from(box_.height)) {
        (0, bh) => (bh.min(h), h),
        (bw, 0) => (bw.min(w), w),
        (bw, bh) => {
            // The smaller of bw/w and bh/h, capped at 1.
            if bw * h <= bh * w {
                (bw.min(w), w)
            } else {
                (bh.min(h), h)
            }
        }
    };
    let scale = |side: u64| ((side * num + den / 2) / den).clamp(1, u64::from(u32::MAX)) as u32;
    (scale(w), scale(h))
}

/// Makes the thumbnail `size` of `content` (an image of type `source_type`).
/// Blocking: run it off the async threads.
pub fn render(content: &[u8], source_type: &str, size: ThumbSize) -> Result<Bytes, FileError> {
    let format = match source_type {
        "image/png" => ImageFormat::Png,
        "image/jpeg" => ImageFormat::Jpeg,
        "image/webp" => ImageFormat::WebP,
        "image/gif" => ImageFormat::Gif,
        other => {
            return Err(FileError::Image(format!(
                "no thumbnails are made of {other}"
            )));
        }
    };
    let mut reader = ImageReader::with_format(Cursor::new(content), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SOURCE_SIDE);
    limits.max_image_height = Some(MAX_SOURCE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => FileError::Image(format!(
            "the image is too large to make thumbnails of (at most {MAX_SOURCE_SIDE}×{MAX_SOURCE_SIDE} pixels)"
        )),
        other => FileError::Image(format!("the image cannot be read: {other}")),
    })?;
    let (w, h) = fit(image.width(), image.height(), size);
    let thumb = if (w, h) == (image.width(), image.height()) {
        image
    } else {
        image.resize_exact(w, h, FilterType::Triangle)
    };
    let mut out = Cursor::new(Vec::new());
    let encoded = if format == ImageFormat::Jpeg {
        let rgb = DynamicImage::ImageRgb8(thumb.to_rgb8());
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85).encode_image(&rgb)
    } else {
        thumb.write_to(&mut out, ImageFormat::Png)
    };
    encoded.map_err(|e| FileError::Image(format!("cannot encode the thumbnail: {e}")))?;
    Ok(Bytes::from(out.into_inner()))
}

impl FileStore {
    /// The key of the thumbnail `size` of the file `file_id` of `entity.field`
    /// (stored under `file_key`, of type `source_type`), making and storing it
    /// first if it is not there yet.
    pub async fn ensure_thumb(
        &self,
        entity: &str,
        field: &str,
        file_id: &uuid::Uuid,
        source_type: &str,
        size: ThumbSize,
    ) -> Result<String, FileError> {
        let key = keys::thumb_key(entity, field, file_id, size);
        if self.exists(&key).await? {
            return Ok(key);
        }
        let source = keys::file_key(entity, field, file_id);
        let content = self
            .read_all(&source, MAX_SOURCE_BYTES)
            .await?
            .ok_or_else(|| FileError::Image(format!("the image is larger than {MAX_SOURCE_BYTES} bytes; no thumbnails are made of it")))?;
        let source_type = source_type.to_string();
        let rendered = tokio::task::spawn_blocking(move || render(&content, &source_type, size))
            .await
            .map_err(|e| FileError::Image(format!("making the thumbnail failed: {e}")))??;
        self.put_bytes(&key, rendered).await?;
        Ok(key)
    }

    /// Makes every thumbnail of a new upload; returns the sizes made (all of them,
    /// or none when the image cannot be read or is too large).
    pub async fn make_thumbs(
        &self,
        entity: &str,
        field: &str,
        file_id: &uuid::Uuid,
        source_type: &str,
        sizes: &[ThumbSize],
    ) -> Result<Vec<ThumbSize>, FileError> {
        if !THUMB_SOURCES.contains(&source_type) {
            return Ok(Vec::new());
        }
        for size in sizes {
            match self
                .ensure_thumb(entity, field, file_id, source_type, *size)
                .await
            {
                Ok(_) => {}
                Err(FileError::Image(why)) => {
                    tracing::info!(entity, field, %file_id, %why, "files: no thumbnails");
                    // Remove the ones made before this one failed.
                    for made in sizes.iter().take_while(|s| *s != size) {
                        self.delete(&keys::thumb_key(entity, field, file_id, *made))
                            .await?;
                    }
                    return Ok(Vec::new());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(sizes.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(text: &str) -> ThumbSize {
        ThumbSize::parse(text).unwrap()
    }

    #[test]
    fn fits_the_box_keeping_the_ratio() {
        assert_eq!(fit(1000, 500, size("100x100")), (100, 50));
        assert_eq!(fit(500, 1000, size("100x100")), (50, 100));
        assert_eq!(fit(1280, 720, size("640x0")), (640, 360));
        assert_eq!(fit(1280, 720, size("0x360")), (640, 360));
        // Never enlarged.
        assert_eq!(fit(50, 20, size("100x100")), (50, 20));
        assert_eq!(fit(50, 20, size("640x0")), (50, 20));
        // Never zero.
        assert_eq!(fit(10_000, 1, size("100x0")), (100, 1));
    }

    #[test]
    fn renders_png_and_jpeg() {
        let img = DynamicImage::new_rgb8(300, 200);
        let mut png = Cursor::new(Vec::new());
        img.write_to(&mut png, ImageFormat::Png).unwrap();
        let thumb = render(png.get_ref(), "image/png", size("100x100")).unwrap();
        let back = image::load_from_memory(&thumb).unwrap();
        assert_eq!((back.width(), back.height()), (100, 67));
        assert_eq!(super::super::sniff(&thumb), "image/png");
        let mut jpeg = Cursor::new(Vec::new());
        img.write_to(&mut jpeg, ImageFormat::Jpeg).unwrap();
        let thumb = render(jpeg.get_ref(), "image/jpeg", size("0x50")).unwrap();
        assert_eq!(super::super::sniff(&thumb), "image/jpeg");
        // GIF and WebP become PNG thumbnails.
        for (format, mime) in [
            (ImageFormat::Gif, "image/gif"),
            (ImageFormat::WebP, "image/webp"),
        ] {
            let mut encoded = Cursor::new(Vec::new());
            DynamicImage::new_rgba8(40, 80)
                .write_to(&mut encoded, format)
                .unwrap();
            let thumb = render(encoded.get_ref(), mime, size("10x10")).unwrap();
            let back = image::load_from_memory(&thumb).unwrap();
            assert_eq!((back.width(), back.height()), (5, 10), "{mime}");
            assert_eq!(super::super::sniff(&thumb), "image/png");
        }
        assert!(matches!(
            render(b"not an image", "image/png", size("10x10")),
            Err(FileError::Image(_))
        ));
        assert!(matches!(
            render(png.get_ref(), "application/pdf", size("10x10")),
            Err(FileError::Image(_))
        ));
    }
}
