//! Hostile pickles: whatever the bytes of an ImageNet16 batch file, the loader returns a
//! `DataError` naming the file (and, for a broken pickle, the byte offset); it never panics.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use lemo_train::data::{DataError, load_imagenet16};
use proptest::prelude::*;

/// A pickle as Python 2's cPickle (protocol 2) writes NAS-Bench-201's batches:
/// `{'data': ndarray uint8 (n, 768), 'labels': [..]}` (as in tests/data_formats.rs).
fn py2_pickle(labels: &[u32]) -> Vec<u8> {
    let n = labels.len();
    let mut p = vec![0x80, 2, b'}', b'q', 1, b'(', b'U', 4];
    p.extend_from_slice(b"dataq\x02cnumpy.core.multiarray\n_reconstruct\nq\x03cnumpy\nndarray\nq\x04K\x00\x85U\x01b\x87Rq\x05(K\x01");
    p.push(b'J');
    p.extend_from_slice(&(n as i32).to_le_bytes());
    p.extend_from_slice(b"M\x00\x03\x86cnumpy\ndtype\nq\x06U\x02u1K\x00K\x01\x87Rq\x07(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T");
    p.extend_from_slice(&((n * 768) as u32).to_le_bytes());
    p.extend((0..n * 768).map(|k| (k % 251) as u8));
    p.extend_from_slice(b"tbU\x06labelsq\x08]q\x09(");
    for &l in labels {
        if l < 256 {
            p.extend_from_slice(&[b'K', l as u8]);
        } else {
            p.push(b'M');
            p.extend_from_slice(&(l as u16).to_le_bytes());
        }
    }
    p.extend_from_slice(b"eu.");
    p
}

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/data_fixtures/imagenet16")
    .join(name);
    std::fs::read(path).unwrap()
}

/// The valid pickles the mutations start from: Python 2 by hand, Python 3 protocols 0 to 5.
fn valid_pickles() -> Vec<Vec<u8>> {
    vec![
        py2_pickle(&[1, 300, 120]),
        fixture("py3_protocol0.pkl"),
        fixture("py3_protocol2.pkl"),
        fixture("py3_protocol4.pkl"),
        fixture("py3_protocol5.pkl"),
        fixture("py3_protocol2_numpy_labels.pkl"),
    ]
}

/// Load `bytes` as `train_data_batch_1`; panics (failing the property) only if the loader
/// panics or returns an error that does not name the file.
fn load(bytes: &[u8]) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("train_data_batch_1");
    std::fs::write(&file, bytes).unwrap();
    match load_imagenet16(tmp.path()) {
        Ok(_) => Ok(()),
        Err(e) => {
            let path: PathBuf = match e {
                DataError::Truncated { path, offset, .. }
                | DataError::Malformed { path, offset, .. } => {
                    prop_assert!(offset <= bytes.len() as u64, "offset {offset} past the end");
                    path
                }
                DataError::Invalid { path, .. } => path,
                other => return Err(TestCaseError::fail(format!("unexpected error {other:?}"))),
            };
            prop_assert_eq!(path, file);
            Ok(())
        }
    }
}

#[test]
fn mark_popped_before_list_is_malformed_with_file_and_offset() {
    // None, MARK, POP, LIST, STOP: this panicked (split_off past the stack) before.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("train_data_batch_1");
    std::fs::write(&file, b"N(0l.").unwrap();
    match load_imagenet16(tmp.path()).unwrap_err() {
        DataError::Malformed { path, offset, what } => {
            assert_eq!(path, file);
            assert_eq!(offset, 3, "{what}");
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    let msg = load_imagenet16(tmp.path()).unwrap_err().to_string();
    assert!(
        msg.contains("train_data_batch_1") && msg.contains("byte 3"),
        "{msg}"
    );
}

/// Every opcode the reader knows (and a few it does not), so random sequences reach deep.
const OPCODES: &[u8] = b"().0123NIJKLMFGSTUBCXVh]})lted\x85\x86\x87aesucRbpqrgj\x80\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f\x90\x91\x92\x93\x94\x95\x96\x00\x01\x02\n\xff";

fn opcode_soup() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(OPCODES), 0..64)
}

/// Opcodes without arguments that only move the stack and the MARKs, weighted towards
/// pushes, MARKs and POPs: random sequences of these get past their first opcodes and, on the
/// old reader, hit the MARK bookkeeping about once in a hundred (as `N(0l.` does).
const STACK_OPCODES: &[u8] = b"NNNN((((0000]}ltdaeu12";

/// A mutation of a valid pickle: byte changes, an insertion, a deletion, a truncation.
#[derive(Debug, Clone)]
enum Edit {
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Delete(prop::sample::Index, usize),
    Truncate(prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        2 => (any::<prop::sample::Index>(), opcode_soup()).prop_map(|(i, b)| Edit::Insert(i, b)),
        1 => (any::<prop::sample::Index>(), 1usize..16).prop_map(|(i, n)| Edit::Delete(i, n)),
        1 => any::<prop::sample::Index>().prop_map(Edit::Truncate),
    ]
}

fn apply(mut p: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        if p.is_empty() {
            break;
        }
        match e {
            Edit::Set(i, b) => {
                let i = i.index(p.len());
                p[i] = *b;
            }
            Edit::Insert(i, bytes) => {
                let i = i.index(p.len());
                p.splice(i..i, bytes.iter().copied());
            }
            Edit::Delete(i, n) => {
                let i = i.index(p.len());
                let end = (i + n).min(p.len());
                p.drain(i..end);
            }
            Edit::Truncate(i) => {
                let i = i.index(p.len());
                p.truncate(i);
            }
        }
    }
    p
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        load(&bytes)?;
    }

    #[test]
    fn opcode_sequences_never_panic(mut ops in opcode_soup()) {
        ops.push(b'.');
        load(&ops)?;
        // and after a valid protocol header
        let mut p = vec![0x80, 2];
        p.extend_from_slice(&ops);
        load(&p)?;
    }

    #[test]
    fn stack_opcode_sequences_never_panic(
        mut ops in prop::collection::vec(prop::sample::select(STACK_OPCODES), 0..48),
    ) {
        ops.push(b'.');
        load(&ops)?;
    }

    #[test]
    fn mutated_valid_pickles_never_panic(
        which in 0usize..6,
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let p = valid_pickles().swap_remove(which);
        load(&apply(p, &edits))?;
    }
}
