//! Arbitrary bytes never make the npy reader or the text parsers (pairs, MMRec `.inter`, rating
//! logs) panic: they either parse or return an error. (Bounded, deterministic fuzzing with proptest; raise PROPTEST_CASES for a
//! longer run.)

use painvrl_data::npy::read_matrix_bytes;
use painvrl_data::tsv::{parse_mmrec, parse_pairs, parse_ratings};
use proptest::prelude::*;
use std::path::Path;

fn npy_header(descr: &str, shape: &str) -> Vec<u8> {
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    b.extend_from_slice(h.as_bytes());
    b
}

/// Cases per property: `PROPTEST_CASES` when set (a longer fuzzing run), else 2,000.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn npy_reader_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = read_matrix_bytes(Path::new("fuzz.npy"), &bytes);
    }

    #[test]
    fn npy_reader_never_panics_on_valid_headers_with_random_bodies(
        descr in prop::sample::select(vec!["<f2", "<f4", "<f8", "|u1", "<i8", ">f4", "<c8"]),
        rows in 0u64..5, cols in 0u64..5, body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut b = npy_header(descr, &format!("({rows}, {cols})"));
        b.extend_from_slice(&body);
        if let Ok((r, c, v)) = read_matrix_bytes(Path::new("fuzz.npy"), &b) {
            prop_assert_eq!(v.len(), r * c);
        }
    }

    #[test]
    fn pair_parser_never_panics(text in "[0-9a-z\\t ,\\n#.-]{0,300}") {
        let _ = parse_pairs(Path::new("fuzz.tsv"), &text);
    }

    #[test]
    fn pair_parser_never_panics_on_arbitrary_unicode(text in any::<String>()) {
        let _ = parse_pairs(Path::new("fuzz.tsv"), &text);
    }

    #[test]
    fn mmrec_parser_never_panics(body in "[0-9a-z\t \n-]{0,300}", header in prop::sample::select(vec![
        "userID\titemID\tx_label\n", "itemID\tx_label\tuserID\trating\n", "userID\titemID\n", "",
    ])) {
        let _ = parse_mmrec(Path::new("fuzz.inter"), &format!("{header}{body}"));
    }

    #[test]
    fn rating_parser_never_panics(text in "[0-9a-z\t ,\n.:e+-]{0,300}") {
        let _ = parse_ratings(Path::new("fuzz.csv"), &text);
    }
}
