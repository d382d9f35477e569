//! Signed download links: `<file url>?exp=<unix seconds>&sig=<hex>`, which work
//! without credentials until `exp`. The signature is HMAC-SHA256 over
//! `<plural>/<record id>/<field>/<file id>/<thumb>/<exp>` (`thumb` empty for the
//! file itself), so a link opens one file (or one thumbnail) of one record and
//! nothing else, and changing any part, the expiry included, breaks it. The key is
//! derived from the configured secret (`files.signing_secret_env`, else the JWT
//! secret), never that secret itself. Verification compares in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a link opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkTarget<'a> {
    pub plural: &'a str,
    pub record_id: &'a str,
    pub field: &'a str,
    pub file_id: &'a str,
    /// A thumbnail size (`100x100`), or `None` for the file.
    pub thumb: Option<&'a str>,
}

impl LinkTarget<'_> {
    fn canonical(&self, exp: i64) -> String {
        format!(
            "{}/{}/{}/{}/{}/{exp}",
            self.plural,
            self.record_id,
            self.field,
            self.file_id,
            self.thumb.unwrap_or("")
        )
    }
}

/// Why a signed link is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link has expired")]
    Expired,
    #[error("the link's signature is not valid")]
    Invalid,
}

/// Signs and checks download links with a key derived from a secret.
#[derive(Clone)]
pub struct Signer {
    key: [u8; 32],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    /// A signer whose key is HMAC-SHA256(secret, "trellis file links v1").
    pub fn new(secret: &[u8]) -> Signer {
        let mut mac = mac(secret);
        mac.update(b"trellis file links v1");
        Signer {
            key: mac.finalize().into_bytes().into(),
        }
    }

    /// A signer with a random key: links die with the process (no secret configured).
    pub fn random() -> Signer {
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        Signer::new(secret.as_bytes())
    }

    /// The signature (lowercase hex) of a link to `target` expiring at `exp`.
    pub fn sign(&self, target: &LinkTarget<'_>, exp: i64) -> String {
        let mut m = mac(&self.key);
        m.update(target.canonical(exp).as_bytes());
        super::hex(&m.finalize().into_bytes())
    }

    /// The query of a link to `target` valid for `ttl_secs` from `now` (unix
    /// seconds): `exp=<exp>&sig=<sig>`, and `exp`.
    pub fn query(&self, target: &LinkTarget<'_>, now: i64, ttl_secs: u64) -> (String, i64) {
        let exp = now.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX));
        let mut query = String::new();
        if let Some(t) = target.thumb {
            query.push_str("thumb=");
            query.push_str(t);
            query.push('&');
        }
        query.push_str(&format!("exp={exp}&sig={}", self.sign(target, exp)));
        (query, exp)
    }

    /// Checks a link's `exp` and `sig` for `target` at `now` (unix seconds). The
    /// signature is checked before the expiry, in constant time, so a refusal says
    /// nothing about a forged link's other parts.
    pub fn verify(
        &self,
        target: &LinkTarget<'_>,
        exp: i64,
        sig: &str,
        now: i64,
    ) -> Result<(), LinkError> {
        let given = unhex(sig).ok_or(LinkError::Invalid)?;
        let mut m = mac(&self.key);
        m.update(target.canonical(exp).as_bytes());
        m.verify_slice(&given).map_err(|_| LinkError::Invalid)?;
        if now >= exp {
            return Err(LinkError::Expired);
        }
        Ok(())
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

/// Bytes from lowercase or uppercase hex of exactly 64 digits (a SHA-256).
fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> LinkTarget<'static> {
        LinkTarget {
            plural: "contractors",
            record_id: "0190c6b4-0000-7000-8000-000000000001",
            field: "cv",
            file_id: "0190c6b4-0000-7000-8000-0000000000f1",
            thumb: None,
        }
    }

    #[test]
    fn a_link_works_until_it_expires() {
        let s = Signer::new(b"secret");
        let (query, exp) = s.query(&target(), 1_000, 300);
        assert_eq!(exp, 1_300);
        let sig = query.rsplit_once("sig=").unwrap().1;
        assert_eq!(s.verify(&target(), exp, sig, 1_000), Ok(()));
        assert_eq!(s.verify(&target(), exp, sig, 1_299), Ok(()));
        assert_eq!(
            s.verify(&target(), exp, sig, 1_300),
            Err(LinkError::Expired)
        );
    }

    #[test]
    fn every_part_is_bound() {
        let s = Signer::new(b"secret");
        let t = target();
        let sig = s.sign(&t, 2_000);
        let others = [
            LinkTarget {
                plural: "organizations",
                ..t
            },
            LinkTarget {
                record_id: "0190c6b4-0000-7000-8000-000000000002",
                ..t
            },
            LinkTarget {
                field: "avatar",
                ..t
            },
            LinkTarget {
                file_id: "0190c6b4-0000-7000-8000-0000000000f2",
                ..t
            },
            LinkTarget {
                thumb: Some("100x100"),
                ..t
            },
        ];
        for other in others {
            assert_eq!(
                s.verify(&other, 2_000, &sig, 0),
                Err(LinkError::Invalid),
                "{other:?}"
            );
        }
        // A later expiry with the same signature.
        assert_eq!(s.verify(&t, 2_001, &sig, 0), Err(LinkError::Invalid));
        // Another secret.
        assert_eq!(
            Signer::new(b"other").verify(&t, 2_000, &sig, 0),
            Err(LinkError::Invalid)
        );
        // Malformed signatures.
        for bad in [
            "",
            "zz",
            &sig[..62],
            &format!("{sig}00"),
            &sig.replace(|c: char| c.is_ascii_digit(), "g"),
        ] {
            assert_eq!(
                s.verify(&t, 2_000, bad, 0),
                Err(LinkError::Invalid),
                "{bad}"
            );
        }
        // Upper case hex is the same signature.
        assert_eq!(s.verify(&t, 2_000, &sig.to_uppercase(), 0), Ok(()));
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_canonical_text() {
        // Computed independently with Python:
        // k = hmac.new(b"secret", b"trellis file links v1", sha256).digest()
        // hmac.new(k, b"contractors/<id>/cv/<file id>//2000", sha256).hexdigest()
        let s = Signer::new(b"secret");
        assert_eq!(s.sign(&target(), 2000), PYTHON_SIG);
    }

    const PYTHON_SIG: &str = "1c85b75ecde3b900058331d3b53adf5572f5e721c17f7276ecafb7312c1d3c69";
}
