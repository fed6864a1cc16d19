//! A TIFF's first directory checked against the file and the limits before
//! any decoder reads it.
//!
//! The `tiff` crate reads the first directory while it is constructed,
//! before the `image` crate can hand it our limits, and reserves room for a
//! tag's values (one [`tiff::decoder::ifd::Value`] each) from the count the
//! entry declares, before reading them; its own default allows 256 MiB. A
//! 10 kB upload declaring three million strip offsets thus made it reserve
//! about 100 MB. Two rules apply to every entry: its values must fit in the
//! file (a count beyond it is a lie), and their reservation must fit in the
//! decoders' single-allocation allowance (`DecodeLimits::max_alloc`), which
//! is the limit the `tiff` crate applies once the limits reach it.

use tiff::decoder::ifd::Value;

/// Checks every entry of the first directory of a classic or BigTIFF file
/// against the file's length and `max_alloc` bytes of reserved values.
/// `Err` carries what is wrong; a file too short to hold its header or
/// directory is left to the decoder, which reports it.
pub(crate) fn check_first_directory(b: &[u8], max_alloc: u64) -> Result<(), String> {
    let little = match b.get(0..2) {
        Some(b"II") => true,
        Some(b"MM") => false,
        _ => return Ok(()),
    };
    let uint = |o: u64, n: usize| -> Option<u64> {
        let o = usize::try_from(o).ok()?;
        let s = b.get(o..o.checked_add(n)?)?;
        Some(s.iter().enumerate().fold(0u64, |v, (i, &byte)| {
            let shift = if little { i } else { n - 1 - i };
            v | u64::from(byte) << (8 * shift)
        }))
    };
    let Some(version) = uint(2, 2) else {
        return Ok(());
    };
    // (offset of the first directory, size of its entry count, of an entry, of a count)
    let (first, count_len, entry_len, value_count_len) = match version {
        42 => (uint(4, 4), 2, 12, 4),
        43 => (uint(8, 8), 8, 20, 8),
        _ => return Ok(()),
    };
    let Some(first) = first else {
        return Ok(());
    };
    let Some(entries) = uint(first, count_len) else {
        return Ok(());
    };
    let file_len = b.len() as u64;
    for i in 0..entries {
        let at = first + count_len as u64 + i * entry_len;
        let (Some(tag), Some(kind), Some(count)) =
            (uint(at, 2), uint(at + 2, 2), uint(at + 4, value_count_len))
        else {
            return Ok(());
        };
        let bytes = count.saturating_mul(value_size(kind));
        if bytes > file_len {
            return Err(format!(
                "tag {tag} declares {count} values ({bytes} bytes) in a {file_len}-byte file"
            ));
        }
        let reserved = count.saturating_mul(std::mem::size_of::<Value>() as u64);
        if reserved > max_alloc {
            return Err(format!(
                "tag {tag} declares {count} values, {reserved} bytes decoded, over the {max_alloc} allowed"
            ));
        }
    }
    Ok(())
}

/// Bytes per value of a TIFF field type; unknown types count as one byte
/// (their values, too, must be in the file).
fn value_size(kind: u64) -> u64 {
    match kind {
        3 | 8 => 2,                 // SHORT, SSHORT
        4 | 9 | 11 | 13 => 4,       // LONG, SLONG, FLOAT, IFD
        5 | 10 | 12 | 16..=18 => 8, // RATIONAL, SRATIONAL, DOUBLE, LONG8, SLONG8, IFD8
        _ => 1,                     // BYTE, ASCII, SBYTE, UNDEFINED, unknown
    }
}

#[cfg(test)]
mod tests {
    use super::{Value, check_first_directory};

    /// More than any test file's decoded values.
    const ROOMY: u64 = 1 << 30;

    /// A little-endian classic TIFF whose one directory entry is
    /// (tag, type, count, value).
    fn tiff(tag: u16, kind: u16, count: u32) -> Vec<u8> {
        let mut b = b"II*\0".to_vec();
        b.extend(8u32.to_le_bytes());
        b.extend(1u16.to_le_bytes());
        b.extend(tag.to_le_bytes());
        b.extend(kind.to_le_bytes());
        b.extend(count.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.resize(64, 0);
        b
    }

    #[test]
    fn counts_beyond_the_file_are_refused_and_real_ones_pass() {
        // 273 = StripOffsets, type 4 = LONG.
        assert!(check_first_directory(&tiff(273, 4, 3_000_000), ROOMY).is_err());
        assert!(check_first_directory(&tiff(273, 4, 17), ROOMY).is_err()); // 68 bytes > 64
        assert!(check_first_directory(&tiff(273, 4, 16), ROOMY).is_ok());
        assert!(check_first_directory(&tiff(273, 4, 1), ROOMY).is_ok());
        // Big-endian and unknown types are measured the same way.
        let mut be = b"MM\0*".to_vec();
        be.extend(8u32.to_be_bytes());
        be.extend(1u16.to_be_bytes());
        be.extend(270u16.to_be_bytes());
        be.extend(99u16.to_be_bytes());
        be.extend(65u32.to_be_bytes());
        be.resize(64, 0);
        assert!(check_first_directory(&be, ROOMY).is_err());
        // Truncated files are the decoder's to report.
        assert!(check_first_directory(b"II*\0", ROOMY).is_ok());
        assert!(check_first_directory(&tiff(273, 4, 3_000_000)[..12], ROOMY).is_ok());
    }

    #[test]
    fn values_whose_decoding_exceeds_the_allowance_are_refused() {
        // 16 LONGs fit the 64-byte file; decoded, they take 16 Values.
        let b = tiff(273, 4, 16);
        let decoded = 16 * std::mem::size_of::<Value>() as u64;
        assert_eq!(check_first_directory(&b, decoded), Ok(()));
        let err = check_first_directory(&b, decoded - 1).unwrap_err();
        assert!(err.contains("over the"), "{err}");
    }

    #[test]
    fn real_tiffs_pass() {
        let img = image::RgbImage::from_fn(37, 21, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Tiff).unwrap();
        assert_eq!(check_first_directory(out.get_ref(), ROOMY), Ok(()));
    }
}
