//! Where a file field's content is stored: the object keys of a file and of its
//! thumbnails, and the thumbnail sizes (`WxH`). Keys never come from the file's
//! name: entity and field are validated identifiers of the model, the file id a
//! UUID. One definition, used by the write paths (store), the storage (runtime) and
//! the routes (http).

use std::fmt;

/// The key of a file's content: `files/<entity>/<field>/<file id>`.
pub fn file_key(entity: &str, field: &str, file_id: &uuid::Uuid) -> String {
    format!("files/{entity}/{field}/{file_id}")
}

/// The key of one thumbnail of a file: `thumbs/<entity>/<field>/<file id>/<WxH>`.
pub fn thumb_key(entity: &str, field: &str, file_id: &uuid::Uuid, size: ThumbSize) -> String {
    format!("{}/{size}", thumbs_prefix(entity, field, file_id))
}

/// The folder of a file's thumbnails: `thumbs/<entity>/<field>/<file id>`.
pub fn thumbs_prefix(entity: &str, field: &str, file_id: &uuid::Uuid) -> String {
    format!("thumbs/{entity}/{field}/{file_id}")
}

/// The thumbnails' folder of the file stored under `file_key` (a key made by
/// [`file_key`]); `None` for any other key.
pub fn thumbs_prefix_of(file_key: &str) -> Option<String> {
    let rest = file_key.strip_prefix("files/")?;
    let mut parts = rest.split('/');
    let (entity, field, id) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || entity.is_empty() || field.is_empty() {
        return None;
    }
    let id: uuid::Uuid = id.parse().ok()?;
    Some(thumbs_prefix(entity, field, &id))
}

/// The largest side of a thumbnail, in pixels.
pub const MAX_THUMB_SIDE: u32 = 4096;

/// A thumbnail size: `W` by `H` pixels, `0` on one side keeping the ratio (not both).
/// The image is scaled to fit inside the box, keeping its ratio, never enlarged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThumbSize {
    pub width: u32,
    pub height: u32,
}

impl ThumbSize {
    /// `100x100`, `640x0`, `0x200`; `None` for anything else (both 0, a side above
    /// [`MAX_THUMB_SIDE`], signs, spaces, leading zeros).
    pub fn parse(text: &str) -> Option<ThumbSize> {
        let (w, h) = text.split_once('x')?;
        let side = |s: &str| -> Option<u32> {
            if s.is_empty()
                || !s.bytes().all(|b| b.is_ascii_digit())
                || (s.len() > 1 && s.starts_with('0'))
            {
                return None;
            }
            s.parse::<u32>().ok().filter(|v| *v <= MAX_THUMB_SIDE)
        };
        let (width, height) = (side(w)?, side(h)?);
        if width == 0 && height == 0 {
            return None;
        }
        Some(ThumbSize { width, height })
    }
}

impl fmt::Display for ThumbSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_layout() {
        let id: uuid::Uuid = "0190c6b4-0000-7000-8000-000000000001".parse().unwrap();
        assert_eq!(
            file_key("contractor", "cv", &id),
            format!("files/contractor/cv/{id}")
        );
        let size = ThumbSize::parse("100x100").unwrap();
        assert_eq!(
            thumb_key("contractor", "avatar", &id, size),
            format!("thumbs/contractor/avatar/{id}/100x100")
        );
        assert_eq!(
            thumbs_prefix_of(&file_key("contractor", "avatar", &id)),
            Some(format!("thumbs/contractor/avatar/{id}"))
        );
        assert_eq!(thumbs_prefix_of("files/a/b/not-a-uuid"), None);
        assert_eq!(thumbs_prefix_of(&format!("files/a/b/{id}/x")), None);
        assert_eq!(thumbs_prefix_of("thumbs/a/b/c"), None);
    }

    #[test]
    fn thumb_sizes() {
        assert_eq!(
            ThumbSize::parse("640x0"),
            Some(ThumbSize {
                width: 640,
                height: 0
            })
        );
        assert_eq!(
            ThumbSize::parse("0x200").map(|s| s.to_string()).as_deref(),
            Some("0x200")
        );
        for bad in [
            "0x0", "x100", "100x", "100", "-1x5", "10x5000", "010x10", "10 x10", "10X10", "",
        ] {
            assert_eq!(ThumbSize::parse(bad), None, "{bad}");
        }
    }
}
