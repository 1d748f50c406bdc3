//! Image input tokens by OpenAI's published tile rule, and image dimensions read from the
//! header of a base64 `data:` URL (PNG, GIF, JPEG, WebP), so that inline images are priced by
//! their real size. Remote URLs are never fetched.

/// Tokens per image: a base cost plus a cost per 512 px tile at high detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileCost {
    pub base: u64,
    pub tile: u64,
}

/// gpt-4o, gpt-4.1, gpt-4.5, gpt-5 and most vision models: 85 + 170 per tile.
pub const STANDARD: TileCost = TileCost { base: 85, tile: 170 };
/// gpt-4o-mini prices image tokens ~33x higher (OpenAI's vision guide): 2833 + 5667 per tile.
pub const GPT_4O_MINI: TileCost = TileCost { base: 2833, tile: 5667 };
/// o1 and o3: 75 + 150 per tile.
pub const O1_O3: TileCost = TileCost { base: 75, tile: 150 };

/// When the size is unknown (a remote URL, an unreadable header), a 768x768 image at high
/// detail is assumed: 4 tiles, 765 tokens with the standard cost.
pub const UNKNOWN_SIZE: (u32, u32) = (768, 768);

/// Tokens for one image at `detail` ("low", "high", or "auto"/absent, treated as high).
pub fn tokens(cost: TileCost, detail: &str, size: (u32, u32)) -> u64 {
    if detail == "low" {
        return cost.base;
    }
    let (w, h) = high_detail_size(size);
    let tiles = u64::from(w.div_ceil(512)) * u64::from(h.div_ceil(512));
    cost.base + cost.tile * tiles
}

/// Fit within 2048x2048, then shrink so that the shorter side is at most 768 (never enlarge).
fn high_detail_size((w, h): (u32, u32)) -> (u32, u32) {
    let (mut w, mut h) = (f64::from(w.max(1)), f64::from(h.max(1)));
    let fit = (2048.0 / w.max(h)).min(1.0);
    (w, h) = (w * fit, h * fit);
    let shrink = (768.0 / w.min(h)).min(1.0);
    ((w * shrink).round() as u32, (h * shrink).round() as u32)
}

/// Width and height from a `data:image/...;base64,` URL, if its header can be read.
pub fn data_url_size(url: &str) -> Option<(u32, u32)> {
    let (meta, payload) = url.strip_prefix("data:")?.split_once(',')?;
    if !meta.ends_with(";base64") {
        return None;
    }
    // JPEG keeps its size after the EXIF block; 64 KiB of header covers nearly every file.
    let head = payload.get(..payload.len().min(88_000)).unwrap_or(payload);
    let bytes = base64_prefix(head);
    png(&bytes).or_else(|| gif(&bytes)).or_else(|| jpeg(&bytes)).or_else(|| webp(&bytes))
}

fn base64_prefix(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => break,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn be16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?)))
}

fn le16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?)))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn png(b: &[u8]) -> Option<(u32, u32)> {
    (b.get(..8)? == b"\x89PNG\r\n\x1a\n" && b.get(12..16)? == b"IHDR").then_some(())?;
    Some((be32(b, 16)?, be32(b, 20)?))
}

fn gif(b: &[u8]) -> Option<(u32, u32)> {
    matches!(b.get(..6)?, b"GIF87a" | b"GIF89a").then_some(())?;
    Some((le16(b, 6)?, le16(b, 8)?))
}

/// Walks the JPEG segments to the first start-of-frame marker.
fn jpeg(b: &[u8]) -> Option<(u32, u32)> {
    (b.get(..2)? == [0xFF, 0xD8]).then_some(())?;
    let mut at = 2;
    loop {
        let [0xFF, marker] = *b.get(at..at + 2)? else {
            return None;
        };
        let len = be16(b, at + 2)?;
        let is_frame = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_frame {
            return Some((be16(b, at + 7)?, be16(b, at + 5)?));
        }
        at += 2 + usize::try_from(len).ok()?;
    }
}

fn webp(b: &[u8]) -> Option<(u32, u32)> {
    (b.get(..4)? == b"RIFF" && b.get(8..12)? == b"WEBP").then_some(())?;
    let le24 = |at: usize| Some(le16(b, at)? | (u32::from(*b.get(at + 2)?) << 16));
    match b.get(12..16)? {
        b"VP8 " => Some((le16(b, 26)? & 0x3FFF, le16(b, 28)? & 0x3FFF)),
        b"VP8L" => {
            let bits = u32::from_le_bytes(b.get(21..25)?.try_into().ok()?);
            Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        }
        b"VP8X" => Some((le24(24)? + 1, le24(27)? + 1)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_detail_is_the_base_cost_whatever_the_size() {
        assert_eq!(tokens(STANDARD, "low", (4096, 8192)), 85);
    }

    #[test]
    fn high_detail_follows_openais_worked_examples() {
        // OpenAI's vision guide: 1024x1024 → 768x768 → 4 tiles → 765; 2048x4096 → 768x1536 → 6 tiles → 1105.
        assert_eq!(tokens(STANDARD, "high", (1024, 1024)), 765);
        assert_eq!(tokens(STANDARD, "high", (2048, 4096)), 1105);
        assert_eq!(tokens(STANDARD, "auto", (4096, 8192)), 1105);
        // Small images are not enlarged: one tile.
        assert_eq!(tokens(STANDARD, "high", (300, 200)), 255);
        assert_eq!(tokens(GPT_4O_MINI, "high", (1024, 1024)), 2833 + 4 * 5667);
    }

    #[test]
    fn png_gif_jpeg_and_webp_headers_give_their_size() {
        let png = "iVBORw0KGgoAAAANSUhEUgAAAAMAAAACCAYAAACddGYaAAAAC0lEQVR4nGNgwAUAABoAAbw84EEAAAAASUVORK5CYII=";
        assert_eq!(data_url_size(&format!("data:image/png;base64,{png}")), Some((3, 2)));
        let gif = "R0lGODlhBQAEAIAAAP///wAAACwAAAAABQAEAAACBIyPqVgAOw==";
        assert_eq!(data_url_size(&format!("data:image/gif;base64,{gif}")), Some((5, 4)));
        // SOI, an APP0 segment, then SOF0 with height 600 and width 800.
        let jpeg =
            [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x02, 0x58, 0x03, 0x20];
        let jpeg = b64(&jpeg);
        assert_eq!(data_url_size(&format!("data:image/jpeg;base64,{jpeg}")), Some((800, 600)));
        assert_eq!(data_url_size("https://example.com/cat.png"), None);
        assert_eq!(data_url_size("data:image/png;base64,bm90IGFuIGltYWdl"), None);
    }

    fn b64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }
}
