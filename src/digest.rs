//! Running hashes: the one piece every check of bytes goes through, the S3 source's checksums
//! (SHA-256, SHA-1, CRC32, MD5) and the engine's MD5 of whole objects and SHA-256 of a file
//! when its source lists one (the Hub's LFS files), when it is pinned, or when digests are
//! asked for. Bytes are fed as they stream; a file that did not arrive in one piece in order
//! (ranged parts, written by several workers at their offsets) is read back once, in order
//! (`sha256_of_file`).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// A SHA-256 digest.
pub(crate) type Sha256 = [u8; 32];

/// The algorithms bytes are checked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Sha256,
    Sha1,
    Crc32,
    Md5,
}

impl Algorithm {
    /// The name in messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha1 => "SHA-1",
            Algorithm::Crc32 => "CRC32",
            Algorithm::Md5 => "MD5",
        }
    }
}

/// A running hash.
pub(crate) enum Digest {
    Ring(ring::digest::Context),
    Crc32(crc32fast::Hasher),
    Md5(md5::Context),
}

impl Digest {
    pub(crate) fn new(algorithm: Algorithm) -> Digest {
        match algorithm {
            Algorithm::Sha256 => Digest::Ring(ring::digest::Context::new(&ring::digest::SHA256)),
            Algorithm::Sha1 => Digest::Ring(ring::digest::Context::new(
                &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            )),
            Algorithm::Crc32 => Digest::Crc32(crc32fast::Hasher::new()),
            Algorithm::Md5 => Digest::Md5(md5::Context::new()),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            Digest::Ring(c) => c.update(bytes),
            Digest::Crc32(c) => c.update(bytes),
            Digest::Md5(c) => c.consume(bytes),
        }
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        match self {
            Digest::Ring(c) => c.finish().as_ref().to_vec(),
            Digest::Crc32(c) => c.finalize().to_be_bytes().to_vec(),
            Digest::Md5(c) => c.finalize().0.to_vec(),
        }
    }
}

/// The SHA-256 of `bytes` whole.
pub(crate) fn sha256(bytes: &[u8]) -> Sha256 {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// The SHA-256 of a file's first `len` bytes, read in order with one 64 KiB buffer: for files
/// whose parts arrived out of order, or that an earlier run wrote.
pub(crate) fn sha256_of_file(file: &File, len: u64) -> io::Result<Sha256> {
    let mut context = Digest::new(Algorithm::Sha256);
    let mut buf = vec![0u8; 64 << 10];
    let mut pos = 0;
    while pos < len {
        let want = buf.len().min((len - pos) as usize);
        let n = file.read_at(&mut buf[..want], pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the file ended at byte {pos} of {len}"),
            ));
        }
        context.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(context.finish().try_into().expect("SHA-256 is 32 bytes"))
}

/// `N` bytes from exactly `2N` hex digits (either case): an MD5 ETag, a pinned digest, the
/// Hub's LFS SHA-256.
pub(crate) fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16);
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(hex(&sha256(b"")), empty);
        let mut d = Digest::new(Algorithm::Sha256);
        d.update(b"a");
        d.update(b"bc");
        assert_eq!(
            hex(&d.finish()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut d = Digest::new(Algorithm::Md5);
        d.update(b"abc");
        assert_eq!(hex(&d.finish()), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn hex_is_read_strictly() {
        assert_eq!(from_hex::<2>("0aFf"), Some([0x0a, 0xff]));
        assert_eq!(from_hex::<2>("0aF"), None);
        assert_eq!(from_hex::<2>("0aFf0"), None);
        assert_eq!(from_hex::<2>("+aff"), None);
        assert_eq!(from_hex::<2>("0g00"), None);
        assert_eq!(from_hex::<1>("é"), None);
    }

    #[test]
    fn a_file_is_hashed_in_order() {
        let dir = std::env::temp_dir().join(format!("mrsi-digest-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("f");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(
            sha256_of_file(&file, data.len() as u64).unwrap(),
            sha256(&data)
        );
        assert!(sha256_of_file(&file, data.len() as u64 + 1).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
